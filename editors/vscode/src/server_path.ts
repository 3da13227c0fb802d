// Finding the `cria` binary.
//
// Pure logic: the file system and environment come in as `PathEnv`, so unit
// tests check every rule without touching the disk.

import * as path from 'node:path';

import { expandHome } from './settings';

export interface PathEnv {
    platform: NodeJS.Platform;
    env: Record<string, string | undefined>;
    /** The user's home folder. */
    home: string;
    /** The first workspace folder, for relative paths and `${workspaceFolder}`. */
    workspaceFolder?: string;
    /** The extension's own folder: a build that ships the binary has it at `server/cria`. */
    extensionPath?: string;
    /** Whether a path is a file this user may run. */
    isExecutable(p: string): boolean;
}

export type ServerPath =
    | { path: string; source: 'setting' | 'bundled' | 'PATH' | 'cargo' }
    | { error: string };

function pathApi(platform: NodeJS.Platform): path.PlatformPath {
    return platform === 'win32' ? path.win32 : path.posix;
}

/** An environment variable, by name without regard to case on Windows. */
function envVar(penv: PathEnv, name: string): string | undefined {
    if (penv.platform !== 'win32') {
        return penv.env[name];
    }
    const key = Object.keys(penv.env).find((k) => k.toUpperCase() === name.toUpperCase());
    return key === undefined ? undefined : penv.env[key];
}

/** The file names a command may have: `cria`, or on Windows `cria.exe`, `cria.cmd`, ... */
function candidates(name: string, penv: PathEnv): string[] {
    if (penv.platform !== 'win32' || path.win32.extname(name) !== '') {
        return [name];
    }
    const exts = (envVar(penv, 'PATHEXT') ?? '.EXE;.CMD;.BAT;.COM').split(';').filter((e) => e !== '');
    return exts.map((e) => name + e.toLowerCase());
}

/** Looks a command name up on PATH. */
export function findOnPath(name: string, penv: PathEnv): string | undefined {
    const p = pathApi(penv.platform);
    const dirs = (envVar(penv, 'PATH') ?? '').split(p.delimiter).filter((d) => d !== '');
    for (const dir of dirs) {
        for (const file of candidates(name, penv)) {
            const full = p.join(dir, file);
            if (penv.isExecutable(full)) {
                return full;
            }
        }
    }
    return undefined;
}

/**
 * The binary to start, by the first rule that applies:
 *
 * 1. `cria.serverPath`, when set: `~` and `${userHome}` expand, `${workspaceFolder}`
 *    and other relative paths are taken from the first workspace folder, and a
 *    bare name (no slash) is looked up on PATH. It must exist.
 * 2. `server/cria` inside the extension (a build that ships the binary).
 * 3. `cria` on PATH.
 * 4. `~/.cargo/bin/cria`, where `cargo install` puts it (VS Code started from a
 *    desktop often lacks it on PATH).
 */
export function resolveServerPath(configured: string | undefined, penv: PathEnv): ServerPath {
    const p = pathApi(penv.platform);
    const exe = penv.platform === 'win32' ? 'cria.exe' : 'cria';
    const setting = (configured ?? '').trim();
    if (setting !== '') {
        let value = expandHome(setting, penv.home).replace(/\$\{userHome\}/g, penv.home);
        if (value.includes('${workspaceFolder}')) {
            if (penv.workspaceFolder === undefined) {
                return { error: `cria.serverPath "${setting}" uses \${workspaceFolder}, but no folder is open.` };
            }
            value = value.replace(/\$\{workspaceFolder\}/g, penv.workspaceFolder);
        }
        const bare = !/[\\/]/.test(value);
        if (bare) {
            const found = findOnPath(value, penv);
            return found !== undefined
                ? { path: found, source: 'setting' }
                : { error: `cria.serverPath "${setting}": no such command on PATH.` };
        }
        if (!p.isAbsolute(value)) {
            if (penv.workspaceFolder === undefined) {
                return { error: `cria.serverPath "${setting}" is relative, but no folder is open to resolve it against.` };
            }
            value = p.resolve(penv.workspaceFolder, value);
        }
        return penv.isExecutable(value)
            ? { path: value, source: 'setting' }
            : { error: `cria.serverPath "${setting}": ${value} is not an executable file.` };
    }
    if (penv.extensionPath !== undefined) {
        const bundled = p.join(penv.extensionPath, 'server', exe);
        if (penv.isExecutable(bundled)) {
            return { path: bundled, source: 'bundled' };
        }
    }
    const onPath = findOnPath('cria', penv);
    if (onPath !== undefined) {
        return { path: onPath, source: 'PATH' };
    }
    const cargoHome = envVar(penv, 'CARGO_HOME') ?? p.join(penv.home, '.cargo');
    const cargo = p.join(cargoHome, 'bin', exe);
    if (penv.isExecutable(cargo)) {
        return { path: cargo, source: 'cargo' };
    }
    return {
        error:
            'cria: the `cria` binary was not found on PATH nor in ~/.cargo/bin. ' +
            'Install it (`cargo install --path server` in the cria repository) or set `cria.serverPath`.',
    };
}
