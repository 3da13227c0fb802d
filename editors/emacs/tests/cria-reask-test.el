;;; cria-reask-test.el --- cria.el's re-asks, without a server  -*- lexical-binding: t; -*-

;; When the server says an answer came late (`lateAnswer' in `cria/status')
;; or that it is ready after warming, cria.el asks once more, only where
;; the answer it stands for was asked and nothing moved since. lsp-mode's
;; request is replaced by a counter; the statuses are parsed from JSON as
;; lsp-mode parses the server's.
;;
;;   emacs -Q --batch -L <lsp-mode and its dependencies> -l cria.el \
;;     -l tests/cria-reask-test.el -f ert-run-tests-batch-and-exit
;; (editors/emacs/test.sh runs it.)

(require 'ert)
(require 'cl-lib)
(require 'lsp-mode)
(require 'lsp-inline-completion)
(require 'cria)

(defconst cria-test--uri "file:///project/ledger.py")

(defun cria-test--json (text)
  (lsp--read-json text))

(defun cria-test--item ()
  (cria-test--json
   "{\"insertText\": \"total = 0\", \"range\": {\"start\": {\"line\": 1, \"character\": 4}, \"end\": {\"line\": 1, \"character\": 4}}}"))

(defmacro cria-test--with-buffer (asked &rest body)
  "Runs BODY in a buffer shown in the selected window, whose URI is
`cria-test--uri', counting the inline completions asked in ASKED."
  (declare (indent 1))
  `(let ((,asked 0)
         (buffer (generate-new-buffer "ledger.py")))
     (unwind-protect
         (progn
           (switch-to-buffer buffer)
           (insert "def total(rows):\n    ")
           (setq-local lsp-inline-completion-mode t)
           (cl-letf (((symbol-function 'lsp--buffer-uri) (lambda () cria-test--uri))
                     ((symbol-function 'cria--workspace) (lambda () 'workspace))
                     ((symbol-function 'lsp-inline-completion--active-p) (lambda () nil))
                     ((symbol-function 'lsp-inline-completion-display) (lambda (&rest _) (cl-incf ,asked))))
             (clrhash cria--status)
             ,@body))
       (kill-buffer buffer))))

(defun cria-test--status (json)
  (cria--on-status 'workspace (cria-test--json json))
  ;; The re-ask runs on a timer, as in an interactive Emacs.
  (accept-process-output nil 0.05)
  (accept-process-output nil 0.05))

(defun cria-test--shown ()
  "lsp-mode parsing an answer with one suggestion, through cria.el."
  (cria--parse-items (lambda (_) (list (cria-test--item))) 'response))

(defun cria-test--empty ()
  "lsp-mode parsing an empty answer, through cria.el."
  (cria--parse-items (lambda (_) nil) []))

(ert-deftest cria-asks-again-where-a-suggestion-was-shown-when-its-whole-answer-came-late ()
  (cria-test--with-buffer asked
    (cria-test--status "{\"model\": \"m\", \"state\": \"ready\"}")
    (cria-test--shown)
    (cria-test--status (format "{\"model\": \"m\", \"state\": \"ready\", \"lateAnswer\": {\"uri\": \"%s\"}}" cria-test--uri))
    (should (= asked 1))
    ;; Once: the same status again asks nothing.
    (cria-test--status (format "{\"model\": \"m\", \"state\": \"ready\", \"lateAnswer\": {\"uri\": \"%s\"}}" cria-test--uri))
    (should (= asked 1))))

(ert-deftest cria-does-not-ask-again-for-another-document-or-after-the-user-moved-on ()
  (cria-test--with-buffer asked
    (cria-test--shown)
    (cria-test--status "{\"model\": \"m\", \"state\": \"ready\", \"lateAnswer\": {\"uri\": \"file:///project/other.py\"}}")
    (should (= asked 0))
    (insert "t")
    (cria-test--status (format "{\"model\": \"m\", \"state\": \"ready\", \"lateAnswer\": {\"uri\": \"%s\"}}" cria-test--uri))
    (should (= asked 0))
    (cria-test--shown)
    (goto-char (point-min))
    (cria-test--status (format "{\"model\": \"m\", \"state\": \"ready\", \"lateAnswer\": {\"uri\": \"%s\"}}" cria-test--uri))
    (should (= asked 0))))

(ert-deftest cria-asks-again-after-an-empty-answer-given-while-warming-once-ready ()
  (cria-test--with-buffer asked
    (cria-test--status (format "{\"model\": \"m\", \"state\": \"warming\", \"warming\": {\"uri\": \"%s\", \"percentage\": 40}}" cria-test--uri))
    (cria-test--empty)
    (should (= asked 0))
    (cria-test--status "{\"model\": \"m\", \"state\": \"ready\"}")
    (should (= asked 1))
    ;; An empty answer given while ready is not asked again.
    (cria-test--empty)
    (cria-test--status "{\"model\": \"m\", \"state\": \"ready\", \"lastLatencyMs\": 80}")
    (should (= asked 1))))

;;; cria-reask-test.el ends here
