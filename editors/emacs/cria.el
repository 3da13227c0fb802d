;;; cria.el --- Code suggestions from the cria language server, through lsp-mode  -*- lexical-binding: t; -*-

;; Package-Requires: ((emacs "28.1") (lsp-mode "10.0.0"))
;; Keywords: languages, tools
;; Version: 0.1.0

;;; Commentary:

;; cria is a code-completion language server with a resident model.  This
;; file registers it with lsp-mode as an add-on client (it runs next to
;; each language's usual server), turns on lsp-mode's inline completion
;; (ghost text, lsp-mode 10.0.0 and later) in the buffers it serves,
;; binds TAB to accept a shown suggestion and C-g to dismiss it (lsp-mode's
;; own C-<return>, C-n, C-p keep working), and shows cria's state in the
;; mode line from its `cria/status' notification.
;;
;;   (require 'cria)
;;   (setq cria-model "qwen2.5-coder-0.5b-instruct")
;;   (add-hook 'python-mode-hook #'lsp-deferred)   ; as for any lsp-mode server
;;
;; See editors/emacs/README.md in the cria repository.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'lsp-mode)
(require 'lsp-inline-completion nil t)

(defgroup cria nil
  "Code suggestions from the cria language server."
  :group 'lsp-mode
  :prefix "cria-")

(defcustom cria-executable "cria"
  "The cria binary: a name on `exec-path' or a path."
  :type 'string)

(defcustom cria-model nil
  "Model name (see `cria models') or path to a .gguf file.
nil lets the server choose (qwen2.5-coder-0.5b-instruct)."
  :type '(choice (const :tag "Server default" nil) string))

(defcustom cria-settings nil
  "Other server settings, as an alist of (KEY . VALUE).
For example \\='((maxTokens . 64) (latencyBudgetMs . 2000)).  They are
sent as `initializationOptions' and, after `cria-push-settings', with
`workspace/didChangeConfiguration'.  `cria-model' is added as `model'."
  :type '(alist :key-type symbol :value-type sexp))

(defcustom cria-major-modes
  '(python-mode python-ts-mode rust-mode rust-ts-mode rustic-mode
    js-mode js-ts-mode js2-mode typescript-mode typescript-ts-mode tsx-ts-mode
    go-mode go-ts-mode c-mode c-ts-mode c++-mode c++-ts-mode java-mode java-ts-mode)
  "Major modes cria serves."
  :type '(repeat symbol))

(defcustom cria-inline-completion-idle-delay 0.1
  "Seconds of idle time before a suggestion is asked for.
Set as `lsp-inline-completion-idle-delay' (whose default, 2 s, is long
for typing) in the buffers cria serves.  lsp-mode waits `lsp-idle-delay'
\(0.5 s by default) after a change before this delay starts."
  :type 'number)

(defcustom cria-accept-keys '("TAB" "<tab>")
  "Keys that accept the shown suggestion (added to lsp-mode's C-<return>).
They act only while a suggestion is shown: TAB indents as usual otherwise."
  :type '(repeat string))

(defcustom cria-dismiss-keys '("C-g")
  "Keys that dismiss the shown suggestion (lsp-mode also binds <escape>)."
  :type '(repeat string))

(defcustom cria-mode-line t
  "Show cria's state (`cria: ready 120ms') in the mode line."
  :type 'boolean)

(defface cria-suggestion
  '((((class color) (min-colors 88) (background dark)) :foreground "grey50" :slant italic)
    (((class color) (min-colors 88) (background light)) :foreground "grey55" :slant italic)
    (((class color) (min-colors 16)) :foreground "brightblack" :slant italic)
    ;; 8 colours: lsp-mode's face (`shadow') is yellow or green there, the
    ;; colours of keywords and built-ins; dim text in the default colour is
    ;; like no typed text.
    (t :weight light :slant italic))
  "Face of the suggestion (ghost text) in the buffers cria serves.")

(defcustom cria-remap-face t
  "Draw suggestions in `cria-suggestion' instead of lsp-mode's
`lsp-inline-completion-overlay-face' (which is `shadow': yellow or green
in an 8-colour terminal, like keywords and built-ins), in cria's buffers."
  :type 'boolean)

(defcustom cria-prefetch t
  "Tell the server where point rests, so the prompt there is computed
before you type (the `cria/prefetch' notification)."
  :type 'boolean)

(defconst cria--server-id 'cria)

;;;; Settings

(defun cria--settings ()
  "The settings sent to the server, as a hash table (never a JSON array)."
  (let ((table (make-hash-table :test #'equal)))
    (dolist (pair cria-settings)
      (puthash (format "%s" (car pair)) (cdr pair) table))
    (when cria-model
      (puthash "model" cria-model table))
    table))

(defun cria--workspace ()
  "The cria workspace of the current buffer, or nil."
  (cl-find-if (lambda (ws) (eq (lsp--workspace-server-id ws) cria--server-id))
              (ignore-errors (lsp-workspaces))))

(defun cria-push-settings ()
  "Send `cria-model' and `cria-settings' to the running servers."
  (interactive)
  (dolist (ws (lsp--session-workspaces (lsp-session)))
    (when (eq (lsp--workspace-server-id ws) cria--server-id)
      (with-lsp-workspace ws
        (lsp-notify "workspace/didChangeConfiguration"
                    (list :settings (cria--settings)))))))

;;;; Status (`cria/status') and the mode line

(defvar cria--status (make-hash-table :test #'eq)
  "The last `cria/status' of each workspace.")

(defvar-local cria--empty-answer nil
  "(POINT . TICK) where a suggestion came back empty while the server was
warming; asked again there once it is ready.")

(defvar-local cria--shown-answer nil
  "(POINT . TICK) where the last suggestion was shown; asked again there
when the server says a whole answer for the buffer came late (`lateAnswer':
a block whose first lines were shown while the rest was written).")

(defun cria--get (params key)
  (and params (lsp-get params key)))

(defun cria--on-status (workspace params)
  "Handles the `cria/status' notification."
  (let* ((previous (gethash workspace cria--status))
         (was (and previous (cria--get previous :state))))
    (puthash workspace params cria--status)
    (when (and (equal was "warming") (equal (cria--get params :state) "ready"))
      (cria--ask-again))
    (when-let* ((late (cria--get params :lateAnswer)))
      (cria--ask-again-late (cria--get late :uri)))
    (force-mode-line-update t)))

(defun cria-status-text (&optional buffer)
  "A short state for mode lines: `cria: ready 120ms', `cria: loading',
`cria: warming 40%', `cria: error'; nil where cria does not serve BUFFER."
  (with-current-buffer (or buffer (current-buffer))
    (when-let* ((ws (cria--workspace)))
      (let* ((status (gethash ws cria--status))
             (state (or (cria--get status :state) "loading"))
             (latency (cria--get status :lastLatencyMs))
             (warming (cria--get status :warming))
             (percentage (and warming (cria--get warming :percentage))))
        (cond
         ((and (equal state "ready") (numberp latency)) (format "cria: ready %dms" latency))
         ((and (equal state "warming") (numberp percentage)) (format "cria: warming %d%%" percentage))
         (t (concat "cria: " state)))))))

(defun cria-describe-status ()
  "Show the server's state, its message and the last completion's numbers."
  (interactive)
  (let* ((ws (or (cria--workspace) (user-error "cria does not serve this buffer")))
         (status (gethash ws cria--status)))
    (message "%s%s%s"
             (cria-status-text)
             (if-let* ((msg (cria--get status :message))) (concat " — " msg) "")
             (if (cria--get status :promptTokens)
                 (format " (model %s, %s prompt tokens, %s reused, %.1f tokens/s)"
                         (cria--get status :model)
                         (cria--get status :promptTokens)
                         (cria--get status :reusedTokens)
                         (or (cria--get status :tokensPerSecond) 0))
               ""))))

(defconst cria--mode-line-entry
  '(:eval (when-let* ((text (cria-status-text)))
            (concat " " (string-replace "%" "%%" text) " ")))
  "The mode line segment, in `mode-line-misc-info'.")

(defun cria--mode-line-setup ()
  (when (and cria-mode-line (not (member cria--mode-line-entry mode-line-misc-info)))
    (setq mode-line-misc-info (append mode-line-misc-info (list cria--mode-line-entry)))))

;;;; Inline completion

(defun cria--parse-items (parse response)
  "Around `lsp-inline-completion--parse-items', for lsp-mode 10.0.0:
- an empty list of items is no suggestion (lsp-mode reads the first
  element of any array without checking there is one, and reports the
  error on every empty answer);
- an item without a `range' (optional in LSP: insert at the cursor) gets
  an empty one at point (lsp-mode reads the range's start and end
  unconditionally, and fails on such an item).
Remembers empty answers given while the server was warming."
  (if (and (sequencep response) (not (stringp response)) (= (length response) 0))
      (progn (cria--note-empty) nil)
    (let ((items (funcall parse response))
          (here (let ((pos (lsp--cur-position)))
                  (lsp-make-position :line (plist-get pos :line)
                                     :character (plist-get pos :character)))))
      (if items
          (setq cria--shown-answer (cons (point) (buffer-modified-tick)))
        (cria--note-empty))
      (mapcar (lambda (item)
                (if (lsp-get item :range)
                    item
                  (lsp-put item :range (lsp-make-range :start here :end here))))
              items))))

(defun cria--note-empty ()
  (setq cria--shown-answer nil)
  (when-let* ((ws (cria--workspace))
              (status (gethash ws cria--status)))
    (when (equal (cria--get status :state) "warming")
      (setq cria--empty-answer (cons (point) (buffer-modified-tick))))))

(defun cria--ask-again ()
  "Asks once more where an answer came back empty while warming, if the
buffer and point have not changed since."
  (let ((buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (when-let* ((wish cria--empty-answer))
        (setq cria--empty-answer nil)
        (when (and (bound-and-true-p lsp-inline-completion-mode)
                   (= (point) (car wish))
                   (= (buffer-modified-tick) (cdr wish))
                   (not (lsp-inline-completion--active-p)))
          (run-at-time 0 nil
                       (lambda ()
                         (when (and (buffer-live-p buffer) (eq (current-buffer) buffer)
                                    (= (point) (car wish)))
                           (lsp-inline-completion-display 'implicit)))))))))

(defun cria--ask-again-late (uri)
  "Asks once more where a suggestion was shown in the buffer of URI, if it
is the selected window's, and neither the buffer nor point has changed
since: the server has the whole answer (`lateAnswer') and answers at once."
  (let ((buffer (window-buffer (selected-window))))
    (with-current-buffer buffer
      (when-let* ((wish cria--shown-answer))
        (when (and uri (equal (lsp--buffer-uri) uri)
                   (bound-and-true-p lsp-inline-completion-mode)
                   (= (point) (car wish))
                   (= (buffer-modified-tick) (cdr wish)))
          (setq cria--shown-answer nil)
          (run-at-time 0 nil
                       (lambda ()
                         (when (and (buffer-live-p buffer) (eq (current-buffer) buffer)
                                    (= (point) (car wish))
                                    (= (buffer-modified-tick) (cdr wish)))
                           (lsp-inline-completion-display 'implicit)))))))))

(defun cria--accepted (text _start _end)
  "Reports an accepted suggestion to the server (`cria.accepted')."
  (when-let* ((ws (cria--workspace)))
    (let ((uri (lsp--buffer-uri)))
      (with-lsp-workspace ws
        (lsp-request-async "workspace/executeCommand"
                           (list :command "cria.accepted"
                                 :arguments (vector (list :uri uri :kind "all" :text text :complete t)))
                           #'ignore
                           :mode 'detached)))))

(defun cria--bind-keys ()
  (when (boundp 'lsp-inline-completion-active-map)
    (dolist (key cria-accept-keys)
      (define-key lsp-inline-completion-active-map (kbd key) #'lsp-inline-completion-accept))
    (dolist (key cria-dismiss-keys)
      (define-key lsp-inline-completion-active-map (kbd key) #'lsp-inline-completion-cancel))))

;;;; Prefetch (`cria/prefetch')

(defvar-local cria--last-prefetch nil "(LINE . TIME) of the last prefetch.")

(defun cria--prefetch (&optional force)
  "Tells the server where point is, at most every 250 ms, not while typing."
  (when-let* ((ws (and cria-prefetch (cria--workspace))))
    (let ((line (line-number-at-pos))
          (now (float-time)))
      (when (or force
                (and (not (memq last-command '(self-insert-command newline delete-backward-char
                                                                   lsp-inline-completion-accept)))
                     (not (and cria--last-prefetch
                               (= (car cria--last-prefetch) line)))
                     (not (and cria--last-prefetch
                               (< (- now (cdr cria--last-prefetch)) 0.25)))))
        (setq cria--last-prefetch (cons line now))
        (let ((params (list :textDocument (lsp--text-document-identifier)
                            :position (lsp--cur-position))))
          (with-lsp-workspace ws
            (lsp-notify "cria/prefetch" params)))))))

;;;; Per buffer

(defun cria--buffer-setup ()
  "Runs in each buffer cria attaches to (`lsp-after-open-hook')."
  (when (cria--workspace)
    (cria--bind-keys)
    (setq-local lsp-inline-completion-idle-delay cria-inline-completion-idle-delay)
    (when cria-remap-face
      (face-remap-set-base 'lsp-inline-completion-overlay-face '(:inherit cria-suggestion)))
    (when (and (fboundp 'lsp-inline-completion-mode)
               (not (bound-and-true-p lsp-inline-completion-mode)))
      (lsp-inline-completion-mode 1))
    (add-hook 'lsp-on-idle-hook #'cria--prefetch nil t)
    (cria--prefetch t)))

;;;; The client

(defun cria--command ()
  (list cria-executable "lsp"))

(lsp-register-client
 (make-lsp-client
  :new-connection (lsp-stdio-connection #'cria--command
                                        (lambda () (executable-find cria-executable)))
  :activation-fn (lambda (_file-name mode) (memq mode cria-major-modes))
  :add-on? t
  :priority -1
  :multi-root t
  :server-id cria--server-id
  :initialization-options #'cria--settings
  :notification-handlers (let ((table (make-hash-table :test #'equal)))
                           (puthash "cria/status" #'cria--on-status table)
                           table)))

(unless (fboundp 'lsp-inline-completion-mode)
  (display-warning 'cria "lsp-mode has no inline completion (lsp-inline-completion.el, lsp-mode 10.0.0 or later): cria's suggestions cannot be shown as ghost text"))

(with-eval-after-load 'lsp-inline-completion
  (cria--bind-keys))
(advice-add 'lsp-inline-completion--parse-items :around #'cria--parse-items)
(add-hook 'lsp-after-open-hook #'cria--buffer-setup)
(add-hook 'lsp-inline-completion-accepted-functions #'cria--accepted)
(cria--mode-line-setup)

(provide 'cria)
;;; cria.el ends here
