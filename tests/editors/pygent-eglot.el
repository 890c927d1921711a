;;; pygent-eglot.el --- drive `pygent lsp --stdio' from Emacs + eglot in batch mode  -*- lexical-binding: t -*-
;; Environment: PYGENT_LSP_CMD (a JSON list), PYGENT_TEST_ROOT (a git-initialised
;; project folder), PYGENT_TEST_OUT (where the JSON result goes).
(require 'eglot)
(require 'json)

(defvar pygent-test-out (list :asked [] :updates [] :errors []))

(defun pygent-test-push (key value)
  (setq pygent-test-out
        (plist-put pygent-test-out key (vconcat (plist-get pygent-test-out key) (vector value)))))

;; Pygent asks before a tool call runs: answer "allow once".
(cl-defmethod eglot-handle-request
  (_server (_method (eql pygent/requestPermission)) &rest params)
  (pygent-test-push :asked params)
  (list :optionId "allow_once"))

;; Streamed session events.
(cl-defmethod eglot-handle-notification
  (_server (_method (eql pygent/sessionUpdate)) &key update &allow-other-keys)
  (pygent-test-push :updates (plist-get update :type)))

(defun pygent-command (server name arg)
  "Run the Pygent command NAME with the params object ARG."
  (condition-case err
      (jsonrpc-request server :workspace/executeCommand
                       (list :command name :arguments (vector arg))
                       :timeout 60)
    (error (pygent-test-push :errors (format "%s: %S" name err)) nil)))

(let* ((root (file-name-as-directory (getenv "PYGENT_TEST_ROOT")))
       (cmd (append (json-read-from-string (getenv "PYGENT_LSP_CMD")) nil)))
  (setq eglot-server-programs `((python-mode . ,cmd)))
  (setq eglot-confirm-server-initiated-edits nil)
  (find-file (expand-file-name "src/app.py" root))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (let ((server (eglot-current-server)))
    (if (not server)
        (pygent-test-push :errors "eglot did not connect")
      (let ((session (pygent-command server "pygent.session.new"
                                     (list :workspaceFolder root :runtime "local"))))
        (when session
          (let ((sid (plist-get session :sessionId)))
            (setq pygent-test-out (plist-put pygent-test-out :session session))
            (setq pygent-test-out
                  (plist-put pygent-test-out :prompt
                             (pygent-command server "pygent.session.prompt"
                                             (list :sessionId sid :prompt "Greet the world"))))
            (setq pygent-test-out
                  (plist-put pygent-test-out :applied
                             (pygent-command server "pygent.workspace.apply" (list :sessionId sid))))
            (setq pygent-test-out
                  (plist-put pygent-test-out :buffer
                             (with-current-buffer (find-buffer-visiting (expand-file-name "src/app.py" root))
                               (buffer-substring-no-properties (point-min) (point-max)))))))))
      (ignore-errors (eglot-shutdown server))))

(with-temp-file (getenv "PYGENT_TEST_OUT")
  (insert (json-encode pygent-test-out)))
(kill-emacs 0)
