import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ServerLogParser } from '../../src/server_log';

test('tracing lines lose their timestamp; the level picks the channel method', () => {
    const p = new ServerLogParser();
    assert.deepEqual(p.line('2026-11-29T00:20:40.010794Z  INFO cria::protocol::state: model ready model=smollm2 load_ms=750'), {
        level: 'info',
        text: 'cria::protocol::state: model ready model=smollm2 load_ms=750',
    });
    assert.deepEqual(p.line('2026-11-29T00:20:40Z  WARN cria: unknown setting `colour` ignored'), {
        level: 'warn',
        text: 'cria: unknown setting `colour` ignored',
    });
    assert.deepEqual(p.line('ERROR cria::protocol::state: model x failed to load: not found; looked in:'), {
        level: 'error',
        text: 'cria::protocol::state: model x failed to load: not found; looked in:',
    });
    // A continuation line keeps the level of the line it continues.
    assert.deepEqual(p.line('  /root/.cache/cria/models'), { level: 'error', text: '  /root/.cache/cria/models' });
});

test('DEBUG and TRACE go out as info, with their level kept in the text', () => {
    const p = new ServerLogParser();
    assert.deepEqual(p.line('2026-11-29T00:20:40Z DEBUG cria: edit positions clamped'), { level: 'info', text: 'DEBUG cria: edit positions clamped' });
    assert.deepEqual(p.line('2026-11-29T00:20:40Z TRACE cria: x'), { level: 'info', text: 'TRACE cria: x' });
});

test('colour codes are removed; usage errors and panics are errors', () => {
    const p = new ServerLogParser();
    assert.deepEqual(p.line('\x1b[2m2026-11-29T00:20:40Z\x1b[0m \x1b[32m INFO\x1b[0m cria: hi'), { level: 'info', text: 'cria: hi' });
    assert.equal(p.line("error: unexpected argument '--stdio' found").level, 'error');
    assert.equal(p.line('Usage: cria lsp [OPTIONS]').level, 'error');
    assert.equal(new ServerLogParser().line("thread 'main' panicked at src/main.rs:1:1:").level, 'error');
    assert.equal(new ServerLogParser().line('plain text').level, 'info');
});
