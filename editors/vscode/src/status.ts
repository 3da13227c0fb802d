// What the status-bar item shows, from the client's state, `$/progress` and
// `cria/status`.
//
// Pure logic: a small state machine and its rendering to text; `ctx.ts` puts
// the result on a `vscode.StatusBarItem`.

import type { CriaStatus } from './lsp_ext';

/** Where the server and its model are. `warming`: ready, and computing a document's prompt in the background. */
export type Phase = 'stopped' | 'starting' | 'loading' | 'ready' | 'warming' | 'error';

export interface StatusState {
    phase: Phase;
    /** The model (while loading, ready, or the one that failed). */
    model?: string;
    /** Load progress from `$/progress`, 0..100. */
    percent?: number;
    /** The error (phase `error`), or progress text. */
    message?: string;
    lastLatencyMs?: number;
    tokensPerSecond?: number;
    promptTokens?: number;
    reusedTokens?: number;
    /** The document being warmed (phase `warming`) and how far, 0..100. */
    warming?: { uri: string; percent?: number };
    kvCacheMb?: number;
    kvSlots?: number;
}

export const INITIAL_STATUS: StatusState = { phase: 'stopped' };

/** The language client's state (vscode-languageclient's `State`, by name). */
export type ClientState = 'starting' | 'running' | 'stopped';

/** After the language client changed state. */
export function onClientState(prev: StatusState, state: ClientState): StatusState {
    switch (state) {
        case 'starting':
            return { phase: 'starting' };
        case 'running':
            // The server's first cria/status follows at once; until then it is loading.
            return prev.phase === 'starting' || prev.phase === 'stopped' ? { phase: 'loading' } : prev;
        case 'stopped':
            // Keep an error on show: it says why the server stopped.
            return prev.phase === 'error' ? prev : { phase: 'stopped' };
    }
}

/** After a `cria/status` notification. */
export function onServerStatus(prev: StatusState, status: CriaStatus): StatusState {
    const model = status.model || prev.model;
    const sameModel = model === prev.model;
    const stats = {
        lastLatencyMs: status.lastLatencyMs,
        tokensPerSecond: status.tokensPerSecond,
        promptTokens: status.promptTokens,
        reusedTokens: status.reusedTokens,
        kvCacheMb: status.kvCacheMb,
        kvSlots: status.kvSlots,
    };
    switch (status.state) {
        case 'loading':
            return {
                phase: 'loading',
                model,
                percent: prev.phase === 'loading' && sameModel ? prev.percent : undefined,
                message: status.message,
            };
        case 'ready':
            return { phase: 'ready', model, ...stats };
        case 'warming':
            return {
                phase: 'warming',
                model,
                ...stats,
                warming: { uri: status.warming?.uri ?? '', percent: clampPercent(status.warming?.percentage) },
            };
        case 'error':
            return { phase: 'error', model, message: status.message ?? 'the model failed to load' };
        default:
            return prev; // a state from a newer server: keep what is shown
    }
}

/** A `$/progress` value of a work-done progress (begin, report or end). */
export interface ProgressValue {
    kind: 'begin' | 'report' | 'end';
    title?: string;
    message?: string;
    percentage?: number;
}

/** After a `$/progress` of a model load. */
export function onLoadProgress(prev: StatusState, value: ProgressValue): StatusState {
    if (prev.phase === 'error' && value.kind !== 'begin') {
        return prev;
    }
    switch (value.kind) {
        case 'begin':
            return {
                phase: 'loading',
                // The begin message is the model being loaded.
                model: value.message || prev.model,
                percent: clampPercent(value.percentage) ?? 0,
            };
        case 'report':
            return { ...prev, phase: prev.phase === 'ready' || prev.phase === 'warming' ? prev.phase : 'loading', percent: clampPercent(value.percentage) ?? prev.percent };
        case 'end':
            // cria/status follows with the outcome.
            return { ...prev, percent: prev.phase === 'loading' ? 100 : undefined };
        default:
            return prev;
    }
}

function clampPercent(p: number | undefined): number | undefined {
    if (typeof p !== 'number' || !Number.isFinite(p)) {
        return undefined;
    }
    return Math.max(0, Math.min(100, Math.round(p)));
}

/** An error that keeps the server from running at all (binary not found, crash). */
export function failed(prev: StatusState, message: string): StatusState {
    return { phase: 'error', model: prev.model, message };
}

/** What the status-bar item shows. */
export interface Rendered {
    /** Text with `$(icon)` codicons. */
    text: string;
    /** Markdown tooltip (with command links: give it a trusted MarkdownString). */
    tooltip: string;
    /** Which background: errors in red, being off in yellow. */
    severity: 'normal' | 'warning' | 'error';
}

/** Commands linked from the tooltip, which the MarkdownString must trust. */
export const TOOLTIP_COMMANDS = ['cria.showLog', 'cria.toggle', 'cria.restartServer'] as const;

/** `312 ms`, `1.4 s`. */
export function formatLatency(ms: number): string {
    if (ms < 1000) {
        return `${Math.round(ms)} ms`;
    }
    return `${(ms / 1000).toFixed(1)} s`;
}

/** `8.5 tok/s`, `42 tok/s`. */
export function formatRate(tokensPerSecond: number): string {
    const n = tokensPerSecond < 10 ? tokensPerSecond.toFixed(1) : String(Math.round(tokensPerSecond));
    return `${n} tok/s`;
}

/** A model name short enough for the status bar: a path's file name, without `.gguf`, at most 32 characters. */
export function shortModelName(model: string): string {
    let name = model.split(/[\\/]/).pop() ?? model;
    name = name.replace(/\.gguf$/i, '');
    if (name.length > 32) {
        name = name.slice(0, 31) + '…';
    }
    return name || 'cria';
}

/** The file name of a URI, for the tooltip: `file:///src/a%20b.py` → `a b.py`. */
export function uriFileName(uri: string): string {
    const last = uri.replace(/[?#].*$/, '').replace(/\/+$/, '').split('/').pop() ?? '';
    try {
        return decodeURIComponent(last);
    } catch {
        return last;
    }
}

/** Escapes text for Markdown. */
export function escapeMarkdown(text: string): string {
    return text.replace(/[\\`*_{}[\]()#+\-.!|<>~]/g, (c) => '\\' + c);
}

/** The status-bar item for a state. `enabled`: the `cria.enable` setting. */
export function render(state: StatusState, enabled: boolean): Rendered {
    const model = state.model ? shortModelName(state.model) : undefined;
    const links = '[Show log](command:cria.showLog) · [Toggle suggestions](command:cria.toggle) · [Restart server](command:cria.restartServer)';
    const tip = (lines: (string | undefined)[]) => [...lines.filter((l) => l !== undefined), links].join('\n\n');
    const statsLine = completionLine(state);

    let r: Rendered;
    switch (state.phase) {
        case 'stopped':
            r = { text: '$(stop-circle) cria: stopped', tooltip: tip(['**cria**: server stopped']), severity: 'normal' };
            break;
        case 'starting':
            r = { text: '$(loading~spin) cria', tooltip: tip(['**cria**: starting the server']), severity: 'normal' };
            break;
        case 'loading': {
            const pct = state.percent !== undefined ? ` ${state.percent}%` : '';
            const what = model ?? 'model';
            r = {
                text: `$(loading~spin) cria: loading ${what}${pct}`,
                tooltip: tip([`**cria**: loading model ${state.model ? '`' + state.model + '`' : ''}${pct}`]),
                severity: 'normal',
            };
            break;
        }
        case 'ready': {
            const parts = [`$(sparkle) ${model ?? 'cria'}`];
            if (state.lastLatencyMs !== undefined) {
                parts.push(formatLatency(state.lastLatencyMs));
            }
            if (state.tokensPerSecond !== undefined) {
                parts.push(formatRate(state.tokensPerSecond));
            }
            r = {
                text: parts.join(' · '),
                tooltip: tip([`**cria**: model \`${state.model ?? ''}\` ready`, statsLine ?? 'No suggestion yet.', cacheLine(state)]),
                severity: 'normal',
            };
            break;
        }
        case 'warming': {
            const pct = state.warming?.percent !== undefined ? ` ${state.warming.percent}%` : '';
            const file = state.warming?.uri ? uriFileName(state.warming.uri) : '';
            const what = file ? `the prompt for \`${file}\`` : 'a prompt';
            r = {
                text: `$(sync~spin) ${model ?? 'cria'} · warming${pct}`,
                tooltip: tip([
                    `**cria**: model \`${state.model ?? ''}\` ready, warming ${what}${pct}: suggestions there may be empty until it is done`,
                    statsLine,
                    cacheLine(state),
                ]),
                severity: 'normal',
            };
            break;
        }
        case 'error':
            r = {
                text: '$(error) cria: error',
                tooltip: tip([
                    model ? `**cria**: model \`${state.model}\` failed` : '**cria**: error',
                    state.message ? escapeMarkdown(state.message) : undefined,
                ]),
                severity: 'error',
            };
            break;
    }
    if (!enabled && state.phase !== 'error') {
        r = {
            text: '$(circle-slash) cria: off',
            tooltip: tip(['**cria**: inline suggestions are off (`cria.enable`)', r.tooltip.split('\n\n')[0]]),
            severity: 'warning',
        };
    }
    return r;
}

/** `KV cache: 3 slots, 412 MB`, when the server reports it. */
function cacheLine(state: StatusState): string | undefined {
    const parts = [];
    if (state.kvSlots !== undefined) {
        parts.push(`${state.kvSlots} ${state.kvSlots === 1 ? 'slot' : 'slots'}`);
    }
    if (state.kvCacheMb !== undefined) {
        parts.push(`${Math.round(state.kvCacheMb)} MB`);
    }
    return parts.length > 0 ? `KV cache: ${parts.join(', ')}` : undefined;
}

function completionLine(state: StatusState): string | undefined {
    if (state.lastLatencyMs === undefined) {
        return undefined;
    }
    const parts = [`Last suggestion: ${formatLatency(state.lastLatencyMs)}`];
    if (state.tokensPerSecond !== undefined) {
        parts.push(formatRate(state.tokensPerSecond));
    }
    if (state.promptTokens !== undefined) {
        const reused = state.reusedTokens !== undefined ? ` (${state.reusedTokens} reused)` : '';
        parts.push(`prompt ${state.promptTokens} tokens${reused}`);
    }
    return parts.join(', ');
}
