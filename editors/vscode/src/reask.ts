// Asking once more after "still warming": an inline suggestion that came
// back empty while the server was warming a prompt is asked for again when
// the server reports `ready`, if the user has neither typed nor moved since.
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

    /**
     * An inline-completion answer for the current cursor. `warming`: the
     * latest `cria/status` before it said the server was warming.
     */
    answered(spot: Spot, empty: boolean, warming: boolean): void {
        this.pending = empty && warming ? spot : undefined;
    }

    /** The cursor moved or the document changed: an answer for elsewhere is no longer wanted. */
    moved(spot: Spot): void {
        if (this.pending !== undefined && !sameSpot(this.pending, spot)) {
            this.pending = undefined;
        }
    }

    /**
     * A `cria/status` arrived. Returns the spot to ask again at, once, when
     * warming is over and `current` (the cursor now) is still where the
     * empty answer was given.
     */
    status(state: string, current: Spot | undefined): Spot | undefined {
        if (state === 'warming' || this.pending === undefined) {
            return undefined;
        }
        const spot = this.pending;
        this.pending = undefined;
        return state === 'ready' && current !== undefined && sameSpot(spot, current) ? spot : undefined;
    }
}
