// The client capabilities vscode-languageclient sends in `initialize`, taken
// from the installed package itself: it is loaded with a stand-in for the
// `vscode` module (which exists only inside the editor) and asked to compute
// them, so the test sends exactly what the extension's client sends.

import * as fs from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';

import type { ClientCapabilities } from 'vscode-languageserver-protocol';

/** Any property, call or `new` on it gives another stand-in; it only has to survive construction. */
function standIn(name: string): unknown {
    const target = function () {
        return undefined;
    };
    return new Proxy(target, {
        get(_t, prop) {
            if (prop === 'then') {
                return undefined; // not a promise
            }
            if (prop === Symbol.toPrimitive) {
                return () => name;
            }
            if (name === 'vscode' && prop === 'version') {
                return '1.99.0'; // the client checks the editor's version
            }
            return standIn(`${name}.${String(prop)}`);
        },
        apply(_t, _this, _args) {
            return standIn(`${name}()`);
        },
        construct() {
            return standIn(`new ${name}`) as object;
        },
    });
}

type Loader = (request: string, parent: unknown, isMain: boolean) => unknown;

export function languageClientCapabilities(): { capabilities: ClientCapabilities; version: string } {
    const mod = Module as unknown as { _load: Loader };
    const original = mod._load;
    mod._load = function (this: unknown, request: string, parent: unknown, isMain: boolean) {
        return request === 'vscode' ? standIn('vscode') : original.call(this, request, parent, isMain);
    };
    try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const lc = require('vscode-languageclient/node') as typeof import('vscode-languageclient/node');
        const version = packageVersion(require.resolve('vscode-languageclient/node'));
        const client = new lc.LanguageClient('cria', 'cria', { command: 'cria' }, {});
        const compute = (client as unknown as { computeClientCapabilities(): ClientCapabilities }).computeClientCapabilities;
        const capabilities = compute.call(client);
        // Stand-ins must not have leaked into what goes on the wire.
        return { capabilities: JSON.parse(JSON.stringify(capabilities)) as ClientCapabilities, version };
    } finally {
        mod._load = original;
    }
}

/** The version in the package.json above a file of the package. */
function packageVersion(file: string): string {
    for (let dir = path.dirname(file); dir !== path.dirname(dir); dir = path.dirname(dir)) {
        const manifest = path.join(dir, 'package.json');
        if (fs.existsSync(manifest)) {
            const pkg = JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string; version: string };
            if (pkg.name === 'vscode-languageclient') {
                return pkg.version;
            }
        }
    }
    throw new Error(`no package.json of vscode-languageclient above ${file}`);
}
