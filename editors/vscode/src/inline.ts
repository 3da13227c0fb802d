// Decisions of the inline-completion middleware (pure: the VS Code objects
// are seen through the few fields used, so unit tests pass plain objects).

import { AcceptedArgument, acceptedCommand } from './lsp_ext';
import { languageEnabled } from './settings';

/**
 * Whether to ask the server for a suggestion. `cria.enable` off stops only
 * suggestions as you type: asking explicitly (Trigger Suggestion) still works.
 * A language switched off in `cria.enabledLanguages` gets none at all, as on
 * the server, which would answer with nothing anyway.
 */
export function wantSuggestion(o: { enabled: boolean; invoked: boolean; languages: unknown; languageId: string }): boolean {
    if (!o.enabled && !o.invoked) {
        return false;
    }
    return languageEnabled(o.languages, o.languageId);
}

/** The part of a `vscode.InlineCompletionItem` this module reads and writes. */
export interface InlineItem<R = unknown> {
    insertText: string | { value: string };
    range?: R;
    command?: unknown;
}

/**
 * Gives every suggestion without a range the empty range at the cursor.
 *
 * The server sends a range only when the suggestion also covers text after
 * the cursor (closing brackets, the item selected in the suggest widget).
 * VS Code takes a missing range as "from the start of the word at the cursor
 * to the end of the line", so a suggestion right after an identifier
 * (`acc = defaultdict` → `(int)`) would replace that identifier instead of
 * continuing it, and VS Code shows no ghost text for it at all.
 */
export function placeAtCursor<R>(items: InlineItem<R>[], atCursor: () => R): void {
    for (const item of items) {
        if (item.range === undefined) {
            item.range = atCursor();
        }
    }
}

/**
 * Puts `cria.accepted` on every suggestion that has no command of its own, so
 * that accepting it is reported to the server.
 */
export function attachAcceptedCommand(items: InlineItem[], document: { uri: string; languageId: string }): void {
    for (const item of items) {
        if (item.command !== undefined) {
            continue;
        }
        const text = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
        const argument: AcceptedArgument = { uri: document.uri, languageId: document.languageId, text };
        item.command = acceptedCommand(argument);
    }
}
