// Asking once more when the server has more to say, if the user has neither
// typed nor moved since:
// - after "still warming": an inline suggestion that came back empty while
//   the server was warming a prompt is asked for again when the server
//   reports `ready`;
// - after the first lines of a block: a suggestion shown while the rest was
//   still being written is asked for again when a `cria/status` says a late
//   answer for that document is cached (`lateAnswer`), so the whole block
//   replaces its first lines without a keystroke.
//
// Pure logic: `ctx.ts` feeds in the answers, the cursor moves and the
// server's states, and triggers the inline suggestion when told to.

/** Where a suggestion was asked for. */
export interface Spot {
    uri: string;
    version: number;
    line: number;
    character: number;
}

export function sameSpot(a: Spot, b: Spot): boolean {
    return a.uri === b.uri && a.version === b.version && a.line === b.line && a.character === b.character;
}

export class Reask {
    /** The empty answer given while warming, waiting for `ready`. */
    private pending: Spot | undefined;
    /** The answer with items last given, waiting for a late answer there. */
    private shown: Spot | undefined;

    /**
     * An inline-completion answer for the current cursor. `warming`: the
     * latest `cria/status` before it said the server was warming.
     */
    answered(spot: Spot, empty: boolean, warming: boolean): void {
        this.pending = empty && warming ? spot : undefined;
        this.shown = empty ? undefined : spot;
    }

    /** The cursor moved or the document changed: an answer for elsewhere is no longer wanted. */
    moved(spot: Spot): void {
        if (this.pending !== undefined && !sameSpot(this.pending, spot)) {
            this.pending = undefined;
        }
        if (this.shown !== undefined && !sameSpot(this.shown, spot)) {
            this.shown = undefined;
        }
    }

    /**
     * A `cria/status` arrived (`lateAnswer`: the document whose whole late
     * answer it says is cached). Returns the spot to ask again at, once,
     * when `current` (the cursor now) is still where the answer was given:
     * an empty answer once warming is over, an answer with items once a late
     * answer for its document is cached.
     */
    status(state: string, current: Spot | undefined, lateAnswer?: string): Spot | undefined {
        if (state === 'warming') {
            return undefined;
        }
        let spot = this.pending;
        this.pending = undefined;
        if (spot === undefined && this.shown !== undefined && lateAnswer !== undefined && lateAnswer === this.shown.uri) {
            spot = this.shown;
            this.shown = undefined;
        }
        if (spot === undefined) {
            return undefined;
        }
        return state === 'ready' && current !== undefined && sameSpot(spot, current) ? spot : undefined;
    }
}
