;;; pygent-eglot-diagnostics.el --- Emacs + eglot as an editor user of Pygent's diagnostics  -*- lexical-binding: t -*-
;; The agent runs ruff in the sandbox; the problems show in Flymake (through eglot, no
;; Pygent code in Emacs); `eglot-code-action-quickfix' on the unused variable's line runs
;; "Ask Pygent to fix", whose turn fixes the file and runs ruff again, so the problems clear.
;; Environment: PYGENT_LSP_CMD (JSON list), PYGENT_TEST_ROOT (a git folder), PYGENT_TEST_OUT.
(require 'eglot)
(require 'json)
(require 'flymake)

(defvar pygent-test-out (list :updates [] :errors []))
(defvar pygent-turns-ended 0)

(defun pygent-test-push (key value)
  (setq pygent-test-out
        (plist-put pygent-test-out key (vconcat (plist-get pygent-test-out key) (vector value)))))

(cl-defmethod eglot-handle-notification
  (_server (_method (eql pygent/sessionUpdate)) &key update &allow-other-keys)
  (let ((type (plist-get update :type)))
    (when (equal type "turn_ended") (setq pygent-turns-ended (1+ pygent-turns-ended)))
    (pygent-test-push :updates type)))

(defun pygent-command (server name arg)
  (condition-case err
      (jsonrpc-request server :workspace/executeCommand
                       (list :command name :arguments (vector arg)) :timeout 60)
    (error (pygent-test-push :errors (format "%s: %S" name err)) nil)))

(defun pygent-wait (predicate seconds)
  "Let the server's messages in until PREDICATE holds or SECONDS pass."
  (let ((deadline (+ (float-time) seconds)))
    (while (and (not (funcall predicate)) (< (float-time) deadline))
      (accept-process-output nil 0.05)
      (ignore-errors (flymake-start)))
    (funcall predicate)))

(defun pygent-shown ()
  (vconcat
   (mapcar (lambda (d)
             (list :line (line-number-at-pos (flymake-diagnostic-beg d))
                   :type (symbol-name (flymake-diagnostic-type d))
                   :text (flymake-diagnostic-text d)))
           (sort (flymake-diagnostics) (lambda (a b) (< (flymake-diagnostic-beg a)
                                                      (flymake-diagnostic-beg b)))))))

(let* ((root (file-name-as-directory (getenv "PYGENT_TEST_ROOT")))
       (cmd (append (json-read-from-string (getenv "PYGENT_LSP_CMD")) nil)))
  (setq eglot-server-programs `((python-mode . ,cmd)))
  (setq eglot-sync-connect t)
  (find-file (expand-file-name "greet.py" root))
  (python-mode)
  (apply #'eglot (eglot--guess-contact))
  (let ((server (eglot-current-server)))
    (if (not server)
        (pygent-test-push :errors "eglot did not connect")
      (flymake-mode 1)
      (let ((session (pygent-command server "pygent.session.new"
                                     (list :workspaceFolder root :runtime "local"
                                           :approvalMode "never"))))
        (when session
          (pygent-command server "pygent.session.prompt"
                          (list :sessionId (plist-get session :sessionId) :prompt "lint greet.py"))
          (pygent-wait (lambda () (>= (length (flymake-diagnostics)) 2)) 20)
          (setq pygent-test-out (plist-put pygent-test-out :before (pygent-shown)))
          ;; The user goes to line 5 and lists the actions, then runs the quick fix.
          (goto-char (point-min))
          (forward-line 4)
          (forward-char 4)
          (setq pygent-test-out
                (plist-put pygent-test-out :offered
                           (vconcat (mapcar (lambda (a) (plist-get a :title))
                                            (eglot-code-actions (point) (1+ (point)))))))
          (eglot-code-actions (point) (1+ (point)) "quickfix" t)
          (pygent-wait (lambda () (and (>= pygent-turns-ended 2)
                                       (null (flymake-diagnostics))))
                       40)
          (setq pygent-test-out (plist-put pygent-test-out :after (pygent-shown)))))
      (ignore-errors (eglot-shutdown server)))))

(with-temp-file (getenv "PYGENT_TEST_OUT")
  (insert (json-encode pygent-test-out)))
(kill-emacs 0)
