// cria's own additions to LSP, mirroring the server's `protocol/ext.rs`.
//
// Only `vscode-jsonrpc` here (no `vscode`), so the integration test uses
// these very definitions to talk to the server.

import { NotificationType, RequestType } from 'vscode-jsonrpc';

/**
 * A model's state as `cria/status` reports it. `warming`: the model is ready
 * but a document's prompt is being computed in the background; suggestions
 * for it may come back empty meanwhile.
 */
export type ModelState = 'loading' | 'ready' | 'warming' | 'error';

/** The document whose prompt is being warmed, while `state` is `warming`. */
export interface Warming {
    uri: string;
    /** 0..100. */
    percentage: number;
}

/** `cria/status` (server → client): sent on every model state change and after every completion. */
export interface CriaStatus {
    /** Model name (config name or file name); empty before the first load starts. */
    model: string;
    state: ModelState;
    /** Present while `state` is `warming`. */
    warming?: Warming;
    /** The error when `state` is `error`; may carry progress text while loading. */
    message?: string;
    /** Milliseconds from request to answer of the last completion. */
    lastLatencyMs?: number;
    /** Prompt tokens of the last completion. */
    promptTokens?: number;
    /** Prompt tokens of the last completion reused from the KV cache. */
    reusedTokens?: number;
    /** Generated tokens per second in the last completion. */
    tokensPerSecond?: number;
    /** Memory the KV caches of recently used documents take, in MB (what the system backs for them). */
    kvCacheMb?: number;
    /** The same per KV-cache slot. */
    kvSlotsMb?: number[];
    /** KV-cache slots in use. */
    kvSlots?: number;
    /**
     * Only in the status sent when it happened: a whole answer for this
     * document came after its request was answered (empty while warming, or
     * with a block's first lines) and is cached; asking again at the same
     * place, nothing changed since, gets it at once.
     */
    lateAnswer?: { uri: string };
}

export const status = new NotificationType<CriaStatus>('cria/status');

/** `cria/prefetch` parameters: a document and the cursor in it (UTF-16 position, as negotiated). */
export interface PrefetchParams {
    textDocument: { uri: string };
    position: { line: number; character: number };
}

/**
 * `cria/prefetch` (client → server): the cursor is here in this document;
 * compute its prompt in the background so the next suggestion is quick. No answer.
 */
export const prefetch = new NotificationType<PrefetchParams>('cria/prefetch');

export interface DocumentTextParams {
    /** The document's URI exactly as sent in `didOpen`. */
    uri: string;
}

/** `cria/documentText` (client → server): the server's copy of a document, `null` if it is not open. */
export const documentText = new RequestType<DocumentTextParams, string | null, void>('cria/documentText');

/** `workspace/executeCommand` command the editor runs when a suggestion was accepted. */
export const ACCEPTED_COMMAND = 'cria.accepted';

/** The argument of `cria.accepted`. */
export interface AcceptedArgument {
    uri: string;
    languageId: string;
    /** The accepted text. */
    text: string;
}

/** Progress tokens of model loads are `cria/load/N`. */
export const LOAD_PROGRESS_PREFIX = 'cria/load/';

/** The command put on each inline suggestion, so accepting one is reported to the server. */
export function acceptedCommand(argument: AcceptedArgument): { title: string; command: string; arguments: AcceptedArgument[] } {
    return { title: 'cria: suggestion accepted', command: ACCEPTED_COMMAND, arguments: [argument] };
}
