import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';

import {
    CLIENT_KEYS,
    RESTART_KEYS,
    SERVER_KEYS,
    expandHome,
    languageEnabled,
    launchSettings,
    requiresRestart,
    serverSettings,
} from '../../src/settings';

const getter = (values: Record<string, unknown>) => (key: string) => values[key];

/** The defaults package.json declares, as VS Code would return them. */
function packageDefaults(): Record<string, unknown> {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '../../../package.json'), 'utf8'));
    const props = pkg.contributes.configuration.properties as Record<string, { default: unknown }>;
    return Object.fromEntries(Object.entries(props).map(([k, v]) => [k.replace(/^cria\./, ''), v.default]));
}

describe('serverSettings (initializationOptions and didChangeConfiguration)', () => {
    test('the package.json defaults map to the server defaults', () => {
        assert.deepEqual(serverSettings(getter(packageDefaults()), '/home/u'), {
            maxTokens: 64,
            latencyBudgetMs: 2000,
            promptTokens: 1536,
            suffixShare: 0.25,
            maxSuffixTokens: 128,
            contextShare: 0.15,
            contextLength: 4096,
            kvCacheMb: 512,
            threads: 0,
            device: 'cpu',
            temperature: 0,
            enabledLanguages: { '*': true, plaintext: false, markdown: false, scminput: false },
            logLevel: 'warn',
            backend: { kind: 'embedded' },
        });
    });

    test('every setting is passed on under the name the server reads', () => {
        const s = serverSettings(
            getter({
                model: 'smollm2-135m-instruct',
                maxTokens: 16,
                latencyBudgetMs: 30000,
                promptTokens: 512,
                suffixShare: 0.5,
                contextLength: 2048,
                kvCacheMb: 0,
                temperature: 0.2,
                enabledLanguages: ['python', 'rust'],
                logLevel: 'info',
                enable: false,
                serverPath: '/x/cria',
                'trace.server': 'verbose',
            }),
        );
        assert.deepEqual(s, {
            model: 'smollm2-135m-instruct',
            maxTokens: 16,
            latencyBudgetMs: 30000,
            promptTokens: 512,
            suffixShare: 0.5,
            contextLength: 2048,
            kvCacheMb: 0,
            temperature: 0.2,
            enabledLanguages: ['python', 'rust'],
            logLevel: 'info',
        });
    });

    test('unset values are left out, so the server keeps its own', () => {
        assert.deepEqual(serverSettings(getter({ model: '  ', maxTokens: null, logLevel: '', temperature: undefined })), {});
    });

    test('a model path starting with ~ expands; names and absolute paths do not', () => {
        assert.equal(serverSettings(getter({ model: '~/models/a.gguf' }), '/home/u').model, '/home/u/models/a.gguf');
        assert.equal(serverSettings(getter({ model: ' qwen2.5-coder-1.5b ' }), '/home/u').model, 'qwen2.5-coder-1.5b');
        assert.equal(serverSettings(getter({ model: '/m/b.gguf' }), '/home/u').model, '/m/b.gguf');
    });

    test('numbers typed as strings become numbers; other bad values go to the server to report', () => {
        const s = serverSettings(getter({ latencyBudgetMs: '2500', maxTokens: 'lots', enabledLanguages: 42 }));
        assert.equal(s.latencyBudgetMs, 2500);
        assert.equal(s.maxTokens as unknown, 'lots');
        assert.equal(s.enabledLanguages as unknown, 42);
    });

    test('enabledLanguages objects are copied (VS Code hands out read-only objects)', () => {
        const frozen = Object.freeze({ python: true, '*': false });
        const s = serverSettings(getter({ enabledLanguages: frozen }));
        assert.deepEqual(s.enabledLanguages, { python: true, '*': false });
        assert.notEqual(s.enabledLanguages, frozen);
        assert.doesNotThrow(() => JSON.stringify(s));
    });

    test('package.json declares every key, and only those', () => {
        const declared = Object.keys(packageDefaults()).sort();
        const known = [...SERVER_KEYS, ...RESTART_KEYS, ...CLIENT_KEYS].sort();
        assert.deepEqual(declared, known);
    });
});

describe('restarts', () => {
    const base = launchSettings(getter({ serverPath: '', serverEnv: { CRIA_HOME: '/a' }, model: 'm' }));

    test('launch settings are read and cleaned', () => {
        assert.deepEqual(launchSettings(getter({ serverPath: ' /bin/cria ', serverEnv: { A: 1, B: null }, model: 3 })), {
            serverPath: '/bin/cria',
            serverEnv: { A: '1' },
            model: '',
        });
    });

    test('a new binary or environment needs a new server', () => {
        assert.equal(requiresRestart(base, { ...base, serverPath: '/x/cria' }), true);
        assert.equal(requiresRestart(base, { ...base, serverEnv: { CRIA_HOME: '/b' } }), true);
        assert.equal(requiresRestart(base, { ...base, serverEnv: {} }), true);
    });

    test('a new model is sent to the running server; clearing it restarts', () => {
        assert.equal(requiresRestart(base, { ...base, model: 'other' }), false);
        assert.equal(requiresRestart(base, { ...base, model: '' }), true);
        assert.equal(requiresRestart({ ...base, model: '' }, { ...base, model: 'x' }), false);
    });

    test('the order of environment variables does not matter', () => {
        const a = { ...base, serverEnv: { A: '1', B: '2' } };
        const b = { ...base, serverEnv: { B: '2', A: '1' } };
        assert.equal(requiresRestart(a, b), false);
    });
});

describe('languageEnabled (same rule as the server)', () => {
    test('unset: every language', () => {
        assert.equal(languageEnabled(undefined, 'python'), true);
        assert.equal(languageEnabled(null, 'python'), true);
    });

    test('object: false turns a language off', () => {
        const s = { '*': true, markdown: false };
        assert.equal(languageEnabled(s, 'python'), true);
        assert.equal(languageEnabled(s, 'markdown'), false);
    });

    test('object with "*": false: only languages set to true', () => {
        const s = { '*': false, rust: true, go: false };
        assert.equal(languageEnabled(s, 'rust'), true);
        assert.equal(languageEnabled(s, 'go'), false);
        assert.equal(languageEnabled(s, 'python'), false);
    });

    test('list: only its languages, or all with "*"', () => {
        assert.equal(languageEnabled(['python'], 'python'), true);
        assert.equal(languageEnabled(['python'], 'rust'), false);
        assert.equal(languageEnabled(['*'], 'rust'), true);
    });
});

test('expandHome', () => {
    assert.equal(expandHome('~', '/h'), '/h');
    assert.equal(expandHome('~/a', '/h/'), '/h/a');
    assert.equal(expandHome('~x/a', '/h'), '~x/a');
    assert.equal(expandHome('a/~/b', '/h'), 'a/~/b');
});
