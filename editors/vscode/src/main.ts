// Entry points: activate builds the context and registers the commands.

import * as vscode from 'vscode';

import * as commands from './commands';
import { Ctx } from './ctx';

/** Every command, by the name after `cria.` (package.json lists the same). */
const COMMANDS: Record<string, (ctx: Ctx) => commands.Cmd> = {
    toggle: commands.toggle,
    restartServer: commands.restartServer,
    stopServer: commands.stopServer,
    showLog: commands.showLog,
    triggerSuggestion: commands.triggerSuggestion,
    checkDocumentSync: commands.checkDocumentSync,
};

let ctx: Ctx | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
    ctx = new Ctx(context);
    for (const [name, factory] of Object.entries(COMMANDS)) {
        context.subscriptions.push(vscode.commands.registerCommand(`cria.${name}`, factory(ctx)));
    }
    // Not awaited: activation should not wait for the server to come up.
    void ctx.start();
}

export async function deactivate(): Promise<void> {
    const c = ctx;
    ctx = undefined;
    await c?.dispose();
}
