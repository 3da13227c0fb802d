import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { Reask, Spot } from '../../src/reask';

const at: Spot = { uri: 'file:///a.py', version: 7, line: 3, character: 12 };

describe('Reask: once more after "still warming"', () => {
    test('an empty answer while warming is asked again once, when the server is ready', () => {
        const r = new Reask();
        r.answered(at, true, true);
        assert.equal(r.status('warming', at), undefined, 'still warming');
        assert.deepEqual(r.status('ready', { ...at }), at, 'warming finished: ask again');
        assert.equal(r.status('ready', at), undefined, 'not a second time');
    });

    test('not when the answer had items, or came while not warming', () => {
        const r = new Reask();
        r.answered(at, false, true);
        assert.equal(r.status('ready', at), undefined);
        r.answered(at, true, false);
        assert.equal(r.status('ready', at), undefined);
    });

    test('an answer with items is asked again once when a late answer for its document is cached', () => {
        const r = new Reask();
        r.answered(at, false, false);
        assert.equal(r.status('ready', at), undefined, 'a status without a late answer');
        assert.equal(r.status('ready', at, 'file:///b.py'), undefined, 'a late answer for another document');
        assert.deepEqual(r.status('ready', { ...at }, at.uri), at, 'the rest of the block is cached: ask again');
        assert.equal(r.status('ready', at, at.uri), undefined, 'not a second time');

        r.answered(at, false, false);
        r.moved({ ...at, character: 13 });
        assert.equal(r.status('ready', { ...at, character: 13 }, at.uri), undefined, 'moved since');
        r.answered(at, false, false);
        assert.equal(r.status('ready', { ...at, version: 8 }, at.uri), undefined, 'edited since');
        r.answered(at, true, false);
        assert.equal(r.status('ready', at, at.uri), undefined, 'the answer was empty, not while warming');
    });

    test('not after the cursor moved or the document changed, even back to the same place', () => {
        const r = new Reask();
        r.answered(at, true, true);
        r.moved({ ...at, character: 13 });
        r.moved(at);
        assert.equal(r.status('ready', at), undefined, 'moved away and back');

        r.answered(at, true, true);
        r.moved(at); // a selection event at the same place (no move) keeps it
        assert.equal(r.status('ready', { ...at, version: 8 }), undefined, 'edited since');

        r.answered(at, true, true);
        assert.equal(r.status('ready', undefined), undefined, 'no active editor');
        assert.equal(r.status('ready', at), undefined, 'and forgotten');
    });

    test('a later answer replaces the remembered one; an error forgets it', () => {
        const r = new Reask();
        r.answered(at, true, true);
        r.answered(at, false, true);
        assert.equal(r.status('ready', at), undefined);
        r.answered(at, true, true);
        assert.equal(r.status('error', at), undefined);
        assert.equal(r.status('ready', at), undefined);
    });
});
