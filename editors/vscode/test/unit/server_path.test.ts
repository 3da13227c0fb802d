import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { PathEnv, findOnPath, resolveServerPath } from '../../src/server_path';

function posix(files: string[], env: Record<string, string> = {}, extra: Partial<PathEnv> = {}): PathEnv {
    const set = new Set(files);
    return {
        platform: 'linux',
        env: { PATH: '/usr/local/bin:/usr/bin', ...env },
        home: '/home/u',
        isExecutable: (p) => set.has(p),
        ...extra,
    };
}

describe('resolveServerPath', () => {
    test('default: cria on PATH, first match wins', () => {
        const r = resolveServerPath('', posix(['/usr/bin/cria', '/usr/local/bin/cria']));
        assert.deepEqual(r, { path: '/usr/local/bin/cria', source: 'PATH' });
    });

    test('default: ~/.cargo/bin/cria when not on PATH, or $CARGO_HOME/bin', () => {
        assert.deepEqual(resolveServerPath(undefined, posix(['/home/u/.cargo/bin/cria'])), { path: '/home/u/.cargo/bin/cria', source: 'cargo' });
        assert.deepEqual(resolveServerPath(undefined, posix(['/opt/cargo/bin/cria'], { CARGO_HOME: '/opt/cargo' })), {
            path: '/opt/cargo/bin/cria',
            source: 'cargo',
        });
    });

    test('a binary shipped inside the extension comes before PATH', () => {
        const r = resolveServerPath('', posix(['/ext/server/cria', '/usr/bin/cria'], {}, { extensionPath: '/ext' }));
        assert.deepEqual(r, { path: '/ext/server/cria', source: 'bundled' });
    });

    test('nothing found: an error that says what to do', () => {
        const r = resolveServerPath('', posix([]));
        assert.ok('error' in r);
        assert.match(r.error, /cria\.serverPath/);
        assert.match(r.error, /cargo install/);
    });

    test('setting: an absolute path must exist', () => {
        assert.deepEqual(resolveServerPath('/opt/cria', posix(['/opt/cria', '/usr/bin/cria'])), { path: '/opt/cria', source: 'setting' });
        const r = resolveServerPath('/opt/missing', posix(['/usr/bin/cria']));
        assert.ok('error' in r);
        assert.match(r.error, /\/opt\/missing is not an executable file/);
    });

    test('setting: ~, ${userHome} and ${workspaceFolder} expand', () => {
        const env = posix(['/home/u/bin/cria', '/ws/target/debug/cria'], {}, { workspaceFolder: '/ws' });
        assert.deepEqual(resolveServerPath('~/bin/cria', env), { path: '/home/u/bin/cria', source: 'setting' });
        assert.deepEqual(resolveServerPath('${userHome}/bin/cria', env), { path: '/home/u/bin/cria', source: 'setting' });
        assert.deepEqual(resolveServerPath('${workspaceFolder}/target/debug/cria', env), { path: '/ws/target/debug/cria', source: 'setting' });
    });

    test('setting: a relative path is taken from the workspace folder', () => {
        const env = posix(['/ws/target/debug/cria'], {}, { workspaceFolder: '/ws' });
        assert.deepEqual(resolveServerPath('target/debug/cria', env), { path: '/ws/target/debug/cria', source: 'setting' });
        const none = resolveServerPath('target/debug/cria', posix(['/ws/target/debug/cria']));
        assert.ok('error' in none);
        assert.match(none.error, /no folder is open/);
        const noWs = resolveServerPath('${workspaceFolder}/cria', posix([]));
        assert.ok('error' in noWs);
    });

    test('setting: a bare name is looked up on PATH', () => {
        assert.deepEqual(resolveServerPath('cria-dev', posix(['/usr/bin/cria-dev'])), { path: '/usr/bin/cria-dev', source: 'setting' });
        const r = resolveServerPath('cria-dev', posix(['/usr/bin/cria']));
        assert.ok('error' in r);
        assert.match(r.error, /no such command on PATH/);
    });

    test('Windows: Path in any case, PATHEXT, backslashes', () => {
        const env: PathEnv = {
            platform: 'win32',
            env: { Path: 'C:\\tools;C:\\Windows', PATHEXT: '.COM;.EXE' },
            home: 'C:\\Users\\u',
            isExecutable: (p) => p === 'C:\\tools\\cria.exe' || p === 'C:\\Users\\u\\.cargo\\bin\\cria.exe',
        };
        assert.deepEqual(resolveServerPath('', env), { path: 'C:\\tools\\cria.exe', source: 'PATH' });
        assert.equal(findOnPath('cria.exe', env), 'C:\\tools\\cria.exe');
        const noPath = { ...env, env: {} };
        assert.deepEqual(resolveServerPath('', noPath), { path: 'C:\\Users\\u\\.cargo\\bin\\cria.exe', source: 'cargo' });
        assert.deepEqual(resolveServerPath('~\\.cargo\\bin\\cria.exe', noPath), {
            path: 'C:\\Users\\u\\.cargo\\bin\\cria.exe',
            source: 'setting',
        });
    });
});
