// Typed access to the `cria.*` settings. The mapping to what the server is
// sent, and which changes need a restart, live in `settings.ts` (pure, tested).

import * as os from 'node:os';
import * as vscode from 'vscode';

import {
    CLIENT_KEYS,
    LaunchSettings,
    RESTART_KEYS,
    SECTION,
    SERVER_KEYS,
    ServerSettings,
    launchSettings,
    serverSettings,
} from './settings';

export class Config {
    private get cfg(): vscode.WorkspaceConfiguration {
        return vscode.workspace.getConfiguration(SECTION);
    }

    private readonly get = (key: string): unknown => this.cfg.get(key);

    /** `cria.enable`: whether inline suggestions are shown. */
    get enabled(): boolean {
        return this.cfg.get<boolean>('enable', true);
    }

    /** Sets `cria.enable` where it is set now (workspace or user settings). */
    async setEnabled(value: boolean): Promise<void> {
        const inspect = this.cfg.inspect<boolean>('enable');
        const target =
            inspect?.workspaceFolderValue !== undefined
                ? vscode.ConfigurationTarget.WorkspaceFolder
                : inspect?.workspaceValue !== undefined
                  ? vscode.ConfigurationTarget.Workspace
                  : vscode.ConfigurationTarget.Global;
        await this.cfg.update('enable', value, target);
    }

    /** `cria.enabledLanguages`, as set. */
    get enabledLanguages(): unknown {
        return this.cfg.get('enabledLanguages');
    }

    /** `cria.serverPath` (empty: search PATH). */
    get serverPath(): string {
        return this.launch.serverPath;
    }

    /** `cria.serverEnv`: extra environment variables for the server. */
    get serverEnv(): Record<string, string> {
        return this.launch.serverEnv;
    }

    /** Everything that decides how the server is started. */
    get launch(): LaunchSettings {
        return launchSettings(this.get);
    }

    /** What the server is sent (initializationOptions and didChangeConfiguration). */
    get server(): ServerSettings {
        return serverSettings(this.get, os.homedir());
    }

    /** Whether a configuration change touches settings the server reads. */
    affectsServer(e: vscode.ConfigurationChangeEvent): boolean {
        return SERVER_KEYS.some((k) => e.affectsConfiguration(`${SECTION}.${k}`));
    }

    /** Whether a configuration change touches settings read at start-up. */
    affectsLaunch(e: vscode.ConfigurationChangeEvent): boolean {
        return [...RESTART_KEYS, 'model'].some((k) => e.affectsConfiguration(`${SECTION}.${k}`));
    }

    /** Whether a configuration change touches settings only the extension reads. */
    affectsClient(e: vscode.ConfigurationChangeEvent): boolean {
        return CLIENT_KEYS.some((k) => e.affectsConfiguration(`${SECTION}.${k}`));
    }
}
