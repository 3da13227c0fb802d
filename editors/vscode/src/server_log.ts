// The server's log (its stderr) into VS Code's log output channel.
//
// The channel stamps each line with its own time and level, so the server's
// timestamp and level are taken off and the level picks the channel's method.
// DEBUG and TRACE lines go out as info: the server's own filter
// (`cria.logLevel`) decides what is logged, and a channel left at its default
// level would hide them otherwise. Pure logic, unit-tested.

export type ChannelLevel = 'error' | 'warn' | 'info';

export interface LogLine {
    level: ChannelLevel;
    text: string;
}

// 2026-01-01T00:00:00.000000Z  INFO cria::protocol::state: model ready
const TRACING = /^(?:\d{4}-\d{2}-\d{2}T\S+\s+)?(ERROR|WARN|INFO|DEBUG|TRACE)\s+(.*)$/;
// clap's usage errors and Rust panics
const FATAL = /^(?:error(?:\[\w+\])?:|thread '.*' panicked)/;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

/** Classifies the server's stderr line by line; a line without a level continues the previous one. */
export class ServerLogParser {
    private level: ChannelLevel = 'info';

    line(raw: string): LogLine {
        const line = raw.replace(ANSI, '').replace(/\s+$/, '');
        const m = TRACING.exec(line);
        if (m !== null) {
            const [, level, rest] = m;
            switch (level) {
                case 'ERROR':
                    this.level = 'error';
                    return { level: 'error', text: rest };
                case 'WARN':
                    this.level = 'warn';
                    return { level: 'warn', text: rest };
                case 'INFO':
                    this.level = 'info';
                    return { level: 'info', text: rest };
                default:
                    this.level = 'info';
                    return { level: 'info', text: `${level} ${rest}` };
            }
        }
        if (FATAL.test(line)) {
            this.level = 'error';
        }
        return { level: this.level, text: line };
    }
}
