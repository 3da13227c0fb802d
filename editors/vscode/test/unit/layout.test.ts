// The tested logic must not import `vscode` (it does not exist outside the
// editor), and package.json must list exactly the commands main.ts registers.

import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

import { TOOLTIP_COMMANDS } from '../../src/status';

const root = path.join(__dirname, '../../..');
const read = (p: string) => fs.readFileSync(path.join(root, p), 'utf8');

test('pure modules do not import vscode or the language client', () => {
    for (const file of ['settings.ts', 'status.ts', 'server_path.ts', 'lsp_ext.ts', 'inline.ts', 'server_log.ts', 'prefetch.ts', 'reask.ts']) {
        const source = read(path.join('src', file));
        assert.doesNotMatch(source, /from ['"]vscode['"]|require\(['"]vscode['"]\)/, file);
        assert.doesNotMatch(source, /from ['"]vscode-languageclient/, file);
    }
});

test('package.json contributes the commands main.ts registers', () => {
    const pkg = JSON.parse(read('package.json'));
    const contributed = (pkg.contributes.commands as { command: string }[]).map((c) => c.command).sort();
    const main = read('src/main.ts');
    const table = main.slice(main.indexOf('const COMMANDS'), main.indexOf('};', main.indexOf('const COMMANDS')));
    const registered = [...table.matchAll(/^\s+(\w+): commands\.\w+,$/gm)].map((m) => `cria.${m[1]}`).sort();
    assert.ok(registered.length >= 5);
    assert.deepEqual(contributed, registered);
    // cria.accepted belongs to the server: the language client registers it.
    assert.ok(!contributed.includes('cria.accepted'));
});

test('the tooltip links only to contributed commands', () => {
    const pkg = JSON.parse(read('package.json'));
    const contributed = new Set((pkg.contributes.commands as { command: string }[]).map((c) => c.command));
    for (const c of TOOLTIP_COMMANDS) {
        assert.ok(contributed.has(c), c);
    }
});
