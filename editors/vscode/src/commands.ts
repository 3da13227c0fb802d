// The extension's commands. Each factory takes the context and returns the
// command's implementation; `main.ts` registers them as `cria.<name>`.

import * as vscode from 'vscode';

import type { Ctx } from './ctx';
import * as lsp_ext from './lsp_ext';

export type Cmd = (...args: unknown[]) => unknown;

/** `cria.toggle`: turns suggestions as you type on or off (`cria.enable`). */
export function toggle(ctx: Ctx): Cmd {
    return async () => {
        const enabled = !ctx.config.enabled;
        await ctx.config.setEnabled(enabled);
        vscode.window.setStatusBarMessage(`cria: suggestions ${enabled ? 'on' : 'off'}`, 2000);
    };
}

/** `cria.restartServer`: a new server process, with the current settings. */
export function restartServer(ctx: Ctx): Cmd {
    return () => ctx.restart();
}

/** `cria.stopServer`: stops the server (and frees the model's memory). */
export function stopServer(ctx: Ctx): Cmd {
    return () => ctx.stop();
}

/** `cria.showLog`: the output channel with the server's log. */
export function showLog(ctx: Ctx): Cmd {
    return () => ctx.outputChannel.show(true);
}

/** `cria.triggerSuggestion`: asks for a suggestion at the cursor now. */
export function triggerSuggestion(_ctx: Ctx): Cmd {
    return () => vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
}

/** `cria.checkDocumentSync`: compares the server's copy of the active document with the editor's. */
export function checkDocumentSync(ctx: Ctx): Cmd {
    return async () => {
        const editor = vscode.window.activeTextEditor;
        const client = ctx.client;
        if (editor === undefined || client === undefined || !client.isRunning()) {
            void vscode.window.showWarningMessage('cria: needs an open editor and a running server.');
            return;
        }
        const document = editor.document;
        const uri = client.code2ProtocolConverter.asUri(document.uri);
        const text = await client.sendRequest(lsp_ext.documentText, { uri });
        if (text === null) {
            void vscode.window.showWarningMessage(`cria: the server does not have ${uri} open (is its language enabled?).`);
        } else if (text === document.getText()) {
            void vscode.window.showInformationMessage(`cria: the server's copy of the document matches (${text.length} characters).`);
        } else {
            ctx.log(`document out of sync: ${uri}\n--- server ---\n${text}\n--- editor ---\n${document.getText()}`);
            void vscode.window.showErrorMessage('cria: the server\'s copy of the document differs from the editor\'s; both are in the log.');
        }
    };
}
