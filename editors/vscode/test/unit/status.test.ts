import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
    INITIAL_STATUS,
    StatusState,
    escapeMarkdown,
    failed,
    formatLatency,
    formatRate,
    onClientState,
    onLoadProgress,
    onServerStatus,
    render,
    shortModelName,
    uriFileName,
} from '../../src/status';

describe('formatting', () => {
    test('latency', () => {
        assert.equal(formatLatency(0), '0 ms');
        assert.equal(formatLatency(312.4), '312 ms');
        assert.equal(formatLatency(999), '999 ms');
        assert.equal(formatLatency(1000), '1.0 s');
        assert.equal(formatLatency(1449), '1.4 s');
    });

    test('tokens per second', () => {
        assert.equal(formatRate(8.46), '8.5 tok/s');
        assert.equal(formatRate(42.4), '42 tok/s');
        assert.equal(formatRate(0), '0.0 tok/s');
    });

    test('model names', () => {
        assert.equal(shortModelName('qwen2.5-coder-0.5b-instruct'), 'qwen2.5-coder-0.5b-instruct');
        assert.equal(shortModelName('/home/u/models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'SmolLM2-135M-Instruct.Q4_1');
        assert.equal(shortModelName('C:\\models\\a.GGUF'), 'a');
        const long = shortModelName('a-very-long-model-name-that-goes-on-and-on-forever');
        assert.equal(long.length, 32);
        assert.ok(long.endsWith('…'));
    });

    test('markdown escaping', () => {
        assert.equal(escapeMarkdown('file `a*b`_[x](y)'), 'file \\`a\\*b\\`\\_\\[x\\]\\(y\\)');
    });
});

/** Feeds events through the reducers, as ctx.ts does. */
function run(...events: ((s: StatusState) => StatusState)[]): StatusState {
    return events.reduce((s, e) => e(s), INITIAL_STATUS);
}

describe('state from client state, $/progress and cria/status', () => {
    test('a load: starting, spinner with percentage, then model, latency and tokens/s', () => {
        let s = run((s) => onClientState(s, 'starting'));
        assert.equal(render(s, true).text, '$(loading~spin) cria');

        s = onClientState(s, 'running');
        s = onServerStatus(s, { model: 'smollm2-135m-instruct', state: 'loading' });
        assert.equal(render(s, true).text, '$(loading~spin) cria: loading smollm2-135m-instruct');

        s = onLoadProgress(s, { kind: 'begin', title: 'cria: loading model', message: 'smollm2-135m-instruct', percentage: 0 });
        s = onLoadProgress(s, { kind: 'report', message: 'smollm2-135m-instruct 42%', percentage: 42 });
        assert.equal(render(s, true).text, '$(loading~spin) cria: loading smollm2-135m-instruct 42%');
        assert.equal(render(s, true).severity, 'normal');

        s = onLoadProgress(s, { kind: 'end', message: 'smollm2-135m-instruct ready' });
        s = onServerStatus(s, { model: 'smollm2-135m-instruct', state: 'ready' });
        assert.equal(render(s, true).text, '$(sparkle) smollm2-135m-instruct');
        assert.match(render(s, true).tooltip, /No suggestion yet/);

        s = onServerStatus(s, {
            model: 'smollm2-135m-instruct',
            state: 'ready',
            lastLatencyMs: 312,
            promptTokens: 800,
            reusedTokens: 640,
            tokensPerSecond: 45.2,
        });
        const r = render(s, true);
        assert.equal(r.text, '$(sparkle) smollm2-135m-instruct · 312 ms · 45 tok/s');
        assert.match(r.tooltip, /Last suggestion: 312 ms, 45 tok\/s, prompt 800 tokens \(640 reused\)/);
        assert.match(r.tooltip, /command:cria\.showLog/);
    });

    test('an error shows the message, in red', () => {
        const s = run(
            (s) => onServerStatus(s, { model: 'nope', state: 'loading' }),
            (s) => onServerStatus(s, { model: 'nope', state: 'error', message: 'no model `nope`; see cria models' }),
        );
        const r = render(s, true);
        assert.equal(r.text, '$(error) cria: error');
        assert.equal(r.severity, 'error');
        assert.match(r.tooltip, /model `nope` failed/);
        assert.match(r.tooltip, /no model \\`nope\\`; see cria models/);
    });

    test('an error stays on show when the client then stops', () => {
        const s = run((s) => failed(s, 'binary not found'), (s) => onClientState(s, 'stopped'));
        assert.equal(s.phase, 'error');
        assert.equal(s.message, 'binary not found');
    });

    test('progress after an error does not hide it, but a new load does', () => {
        let s = failed(INITIAL_STATUS, 'boom');
        s = onLoadProgress(s, { kind: 'report', percentage: 50 });
        assert.equal(s.phase, 'error');
        s = onLoadProgress(s, { kind: 'begin', message: 'other', percentage: 0 });
        assert.equal(s.phase, 'loading');
        assert.equal(s.model, 'other');
    });

    test('a reload of another model forgets the old percentage', () => {
        let s = onServerStatus(INITIAL_STATUS, { model: 'a', state: 'loading' });
        s = onLoadProgress(s, { kind: 'report', percentage: 80 });
        s = onServerStatus(s, { model: 'b', state: 'loading' });
        assert.equal(s.percent, undefined);
    });

    test('percentages are clamped and rounded', () => {
        const s = onLoadProgress(onServerStatus(INITIAL_STATUS, { model: 'a', state: 'loading' }), { kind: 'report', percentage: 150.2 });
        assert.equal(s.percent, 100);
        const t = onLoadProgress(s, { kind: 'report', percentage: 33.6 });
        assert.equal(t.percent, 34);
    });

    test('warming: the percentage in the status bar, the file and the KV cache in the tooltip', () => {
        let s = onServerStatus(INITIAL_STATUS, { model: 'qwen', state: 'ready', lastLatencyMs: 90, kvCacheMb: 96.4, kvSlots: 1 });
        assert.match(render(s, true).tooltip, /KV cache: 1 slot, 96 MB/);
        s = onServerStatus(s, {
            model: 'qwen',
            state: 'warming',
            warming: { uri: 'file:///src/my%20app/main.py', percentage: 41.6 },
            kvCacheMb: 212,
            kvSlots: 2,
        });
        const r = render(s, true);
        assert.equal(r.text, '$(sync~spin) qwen · warming 42%');
        assert.equal(r.severity, 'normal');
        assert.match(r.tooltip, /warming the prompt for `main\.py` 42%: suggestions there may be empty/);
        assert.match(r.tooltip, /KV cache: 2 slots, 212 MB/);
        // Warming done.
        s = onServerStatus(s, { model: 'qwen', state: 'ready', kvCacheMb: 212, kvSlots: 2 });
        assert.equal(render(s, true).text, '$(sparkle) qwen');
        assert.equal(s.warming, undefined);
        // Without a percentage or a URI.
        const bare = onServerStatus(s, { model: 'qwen', state: 'warming' });
        assert.equal(render(bare, true).text, '$(sync~spin) qwen · warming');
        assert.match(render(bare, true).tooltip, /warming a prompt/);
        // Off wins, as for ready.
        assert.equal(render(bare, false).text, '$(circle-slash) cria: off');
    });

    test('file names of URIs', () => {
        assert.equal(uriFileName('file:///src/my%20app/main.py'), 'main.py');
        assert.equal(uriFileName('untitled:Untitled-1'), 'untitled:Untitled-1');
        assert.equal(uriFileName('file:///a/%E2%9C%A8.rs?x#y'), '✨.rs');
        assert.equal(uriFileName('file:///a/bad%zz.rs'), 'bad%zz.rs');
    });

    test('a state from a newer server keeps what is shown', () => {
        const s = onServerStatus(INITIAL_STATUS, { model: 'a', state: 'ready' });
        assert.deepEqual(onServerStatus(s, { model: 'a', state: 'sleeping' as never }), s);
    });

    test('stopped, and off', () => {
        assert.equal(render(INITIAL_STATUS, true).text, '$(stop-circle) cria: stopped');
        const ready = onServerStatus(INITIAL_STATUS, { model: 'a', state: 'ready', lastLatencyMs: 5 });
        const off = render(ready, false);
        assert.equal(off.text, '$(circle-slash) cria: off');
        assert.equal(off.severity, 'warning');
        assert.match(off.tooltip, /model `a` ready/);
        // An error shows even when suggestions are off.
        assert.equal(render(failed(ready, 'x'), false).severity, 'error');
    });
});
