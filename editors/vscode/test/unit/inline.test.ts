import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { InlineItem, attachAcceptedCommand, placeAtCursor, wantSuggestion } from '../../src/inline';

describe('wantSuggestion', () => {
    const languages = { '*': true, markdown: false };

    test('on: as you type and on request, in enabled languages', () => {
        assert.equal(wantSuggestion({ enabled: true, invoked: false, languages, languageId: 'rust' }), true);
        assert.equal(wantSuggestion({ enabled: true, invoked: true, languages, languageId: 'rust' }), true);
    });

    test('off: only on request', () => {
        assert.equal(wantSuggestion({ enabled: false, invoked: false, languages, languageId: 'rust' }), false);
        assert.equal(wantSuggestion({ enabled: false, invoked: true, languages, languageId: 'rust' }), true);
    });

    test('a language switched off gets none, even on request', () => {
        assert.equal(wantSuggestion({ enabled: true, invoked: false, languages, languageId: 'markdown' }), false);
        assert.equal(wantSuggestion({ enabled: true, invoked: true, languages, languageId: 'markdown' }), false);
    });
});

test('attachAcceptedCommand puts cria.accepted on items without a command', () => {
    const own = { command: 'x', title: 'theirs' };
    const items: InlineItem[] = [{ insertText: 'a + b' }, { insertText: { value: 'snippet ${1}' } }, { insertText: 'c', command: own }];
    attachAcceptedCommand(items, { uri: 'file:///a.py', languageId: 'python' });
    assert.deepEqual(items[0].command, {
        title: 'cria: suggestion accepted',
        command: 'cria.accepted',
        arguments: [{ uri: 'file:///a.py', languageId: 'python', text: 'a + b' }],
    });
    assert.deepEqual((items[1].command as { arguments: unknown[] }).arguments, [{ uri: 'file:///a.py', languageId: 'python', text: 'snippet ${1}' }]);
    assert.equal(items[2].command, own);
});

test('placeAtCursor gives items without a range the empty range at the cursor, and keeps the others', () => {
    const theirs = { start: 3, end: 9 };
    const items: InlineItem<{ start: number; end: number }>[] = [{ insertText: '(int)' }, { insertText: 'defaultdict(int)', range: theirs }];
    placeAtCursor(items, () => ({ start: 17, end: 17 }));
    assert.deepEqual(items[0].range, { start: 17, end: 17 });
    assert.equal(items[1].range, theirs);
});
