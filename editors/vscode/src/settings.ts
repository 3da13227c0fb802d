// The extension's settings and what the server is sent of them.
//
// Pure logic: no `vscode` import, so unit tests run in plain Node. `config.ts`
// reads the values from VS Code and hands them to these functions.

/** The section of every setting: `cria.model`, `cria.maxTokens`, ... */
export const SECTION = 'cria';

/** Reads one setting below `cria.` (VS Code's `WorkspaceConfiguration.get`). */
export type Getter = (key: string) => unknown;

/** Per-language switches: `{ "*": true, "markdown": false }`, or a list of language ids. */
export type LanguageSwitches = Record<string, boolean> | string[];

/**
 * The settings the server reads from `initializationOptions` and
 * `workspace/didChangeConfiguration` (flat; see the server's `ServerConfig`).
 * Keys whose value is unset are left out, so the server keeps its own value.
 */
export interface ServerSettings {
    model?: string;
    maxTokens?: number;
    latencyBudgetMs?: number;
    promptTokens?: number;
    suffixShare?: number;
    maxSuffixTokens?: number;
    contextShare?: number;
    contextLength?: number;
    kvCacheMb?: number;
    threads?: number;
    device?: string;
    temperature?: number;
    enabledLanguages?: LanguageSwitches;
    logLevel?: string;
    backend?: Record<string, unknown> | string;
}

/** Settings the server reads, by the name of the `cria.*` setting (the server uses the same names). */
export const SERVER_KEYS = [
    'model',
    'maxTokens',
    'latencyBudgetMs',
    'promptTokens',
    'suffixShare',
    'maxSuffixTokens',
    'contextShare',
    'contextLength',
    'kvCacheMb',
    'threads',
    'device',
    'temperature',
    'enabledLanguages',
    'logLevel',
    'backend',
] as const satisfies readonly (keyof ServerSettings)[];

/** Settings only the extension reads; changing one of them restarts the server. */
export const RESTART_KEYS = ['serverPath', 'serverEnv'] as const;

/** Settings only the extension reads, applied without a restart. */
export const CLIENT_KEYS = ['enable', 'trace.server'] as const;

const NUMBER_KEYS = new Set<string>(['maxTokens', 'latencyBudgetMs', 'promptTokens', 'suffixShare', 'maxSuffixTokens', 'contextShare', 'contextLength', 'kvCacheMb', 'threads', 'temperature']);

/** Expands a leading `~` to the home folder (the server does not). */
export function expandHome(value: string, home: string): string {
    if (value === '~') {
        return home;
    }
    if (value.startsWith('~/') || value.startsWith('~\\')) {
        return home.replace(/[\\/]+$/, '') + value.slice(1);
    }
    return value;
}

function isLanguageSwitches(value: unknown): value is LanguageSwitches {
    if (Array.isArray(value)) {
        return value.every((v) => typeof v === 'string');
    }
    return typeof value === 'object' && value !== null && Object.values(value).every((v) => typeof v === 'boolean');
}

/**
 * What the server is sent, from the `cria.*` settings.
 *
 * Unset values (`null`, `undefined`, an empty model) are left out so the
 * server keeps its default. Values of the wrong type are passed on as they
 * are: the server is the one place that validates them, and it shows the
 * user an error and keeps the previous value.
 */
export function serverSettings(get: Getter, home = ''): ServerSettings {
    const out: Record<string, unknown> = {};
    for (const key of SERVER_KEYS) {
        let value = get(key);
        if (value === null || value === undefined) {
            continue;
        }
        if (key === 'model' && typeof value === 'string') {
            value = value.trim();
            if (value === '') {
                continue;
            }
            value = home ? expandHome(value as string, home) : value;
        } else if (key === 'enabledLanguages' && isLanguageSwitches(value) && !Array.isArray(value)) {
            value = { ...value }; // VS Code's objects are read-only proxies
        } else if (key === 'backend' && typeof value === 'object' && !Array.isArray(value)) {
            value = { ...(value as Record<string, unknown>) };
        } else if (key === 'logLevel' && typeof value === 'string' && value.trim() === '') {
            continue;
        } else if (NUMBER_KEYS.has(key) && typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value))) {
            value = Number(value); // "2000" typed into settings.json by hand
        }
        out[key] = value;
    }
    return out as ServerSettings;
}

/** The settings that decide how the server process is started. */
export interface LaunchSettings {
    serverPath: string;
    serverEnv: Record<string, string>;
    /** The model setting: going from a model to none needs a fresh server to fall back to its default. */
    model: string;
}

/** Reads the launch settings. */
export function launchSettings(get: Getter): LaunchSettings {
    const path = get('serverPath');
    const env = get('serverEnv');
    const model = get('model');
    const serverEnv: Record<string, string> = {};
    if (typeof env === 'object' && env !== null && !Array.isArray(env)) {
        for (const [k, v] of Object.entries(env as Record<string, unknown>)) {
            if (v !== null && v !== undefined) {
                serverEnv[k] = String(v);
            }
        }
    }
    return {
        serverPath: typeof path === 'string' ? path.trim() : '',
        serverEnv,
        model: typeof model === 'string' ? model.trim() : '',
    };
}

/**
 * Whether a change of settings needs a new server process rather than a
 * `workspace/didChangeConfiguration`: the binary or its environment changed,
 * or the model setting was cleared (a running server keeps the model it has).
 */
export function requiresRestart(before: LaunchSettings, after: LaunchSettings): boolean {
    if (before.serverPath !== after.serverPath) {
        return true;
    }
    if (JSON.stringify(sortedEntries(before.serverEnv)) !== JSON.stringify(sortedEntries(after.serverEnv))) {
        return true;
    }
    return before.model !== '' && after.model === '';
}

function sortedEntries(o: Record<string, string>): [string, string][] {
    return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Whether suggestions are wanted in a language, by the same rule as the
 * server: a language set to false is off; a list enables only its languages
 * (`"*"` in it enables all); in an object, `"*": false` turns off every
 * language not set to true.
 */
export function languageEnabled(switches: unknown, languageId: string): boolean {
    if (Array.isArray(switches)) {
        return switches.includes(languageId) || switches.includes('*');
    }
    if (typeof switches !== 'object' || switches === null) {
        return true;
    }
    const map = switches as Record<string, unknown>;
    if (map[languageId] === false) {
        return false;
    }
    if (map['*'] === false) {
        return map[languageId] === true;
    }
    return true;
}
