;;; pygent-eglot-config.el --- configure `pygent lsp --stdio' through eglot  -*- lexical-binding: t -*-
;; The snippet of docs/editors.md ("Configuring Pygent"): `eglot-workspace-configuration'
;; holds a `:pygent' section, which eglot sends with workspace/didChangeConfiguration
;; when it connects and when asked (`eglot-signal-didChangeConfiguration').
;; Environment: PYGENT_LSP_CMD (a JSON list), PYGENT_TEST_ROOT (a git-initialised
;; project folder), PYGENT_TEST_OUT (where the JSON result goes).
(require 'eglot)
(require 'json)

(defvar pygent-test-out (list :errors []))

(defun pygent-test-push (key value)
  (setq pygent-test-out
        (plist-put pygent-test-out key (vconcat (plist-get pygent-test-out key) (vector value)))))

(defun pygent-test-put (key value)
  (setq pygent-test-out (plist-put pygent-test-out key value)))

(defun pygent-command (server name arg)
  "Run the Pygent command NAME with the params object ARG."
  (condition-case err
      (jsonrpc-request server :workspace/executeCommand
                       (list :command name :arguments (vector arg))
                       :timeout 60)
    (error (pygent-test-push :errors (format "%s: %S" name err)) nil)))

(defun pygent-configuration (server key value)
  "The effective configuration, once its KEY is VALUE (it is applied asynchronously)."
  (let ((result nil) (tries 0))
    (while (and (< tries 100)
                (progn (setq result (pygent-command server "pygent.configuration" eglot--{}))
                       (not (equal (plist-get (plist-get result :settings) key) value))))
      (setq tries (1+ tries))
      (sleep-for 0.1))
    (when (= tries 100) (pygent-test-push :errors (format "%S never became %S" key value)))
    result))

;; Pygent's configuration (docs/configuration.md); the API key stays in the environment.
(setq-default eglot-workspace-configuration
              '(:pygent (:model "emacs-model" :approvalMode "confirm" :maxSteps 8)))

(let* ((root (file-name-as-directory (getenv "PYGENT_TEST_ROOT")))
       (cmd (append (json-read-from-string (getenv "PYGENT_LSP_CMD")) nil)))
  (setq eglot-server-programs `((python-mode . ,cmd)))
  (find-file (expand-file-name "src/app.py" root))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (let ((server (eglot-current-server)))
    (if (not server)
        (pygent-test-push :errors "eglot did not connect")
      (pygent-test-put :initial (pygent-configuration server :model "emacs-model"))
      (let ((session (pygent-command server "pygent.session.new"
                                     (list :workspaceFolder root :runtime "local"))))
        (pygent-test-put :session session)
        ;; A change: set the variable again and tell the server.
        (setq-default eglot-workspace-configuration
                      '(:pygent (:model "emacs-model" :approvalMode "never")))
        (eglot-signal-didChangeConfiguration server)
        (pygent-test-put :changed (pygent-configuration server :approvalMode "never"))
        (pygent-test-put :list (pygent-command server "pygent.session.list" eglot--{})))
      (ignore-errors (eglot-shutdown server)))))

(with-temp-file (getenv "PYGENT_TEST_OUT")
  (insert (json-encode pygent-test-out)))
(kill-emacs 0)
