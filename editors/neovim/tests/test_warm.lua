-- Never cold: `cria/prefetch`, the warming state and the re-ask after it.
-- The server's `warming` states are fed in with T.status (the real server
-- decides its own timing); everything else is the real server.
local H = ...
local test, eq, ok = H.test, H.eq, H.ok

local MODEL = "smollm2-135m-instruct"
local CIRCLE = {
  "import math",
  "",
  "",
  "def circle_area(radius):",
  "    return math.pi * radius ** 2",
  "",
  "",
  "def circle_circumference(radius):",
  "",
}
local TYPED = "    return 2 * math.pi * rad"

test("prefetch: when the model is ready, on entering a buffer, when the cursor rests; not while typing", function()
  local child = H.child()
  child:lua("vim.o.updatetime = 100")
  child:lua("T.edit('p.py', ...)", CIRCLE)
  child:wait_ready()
  -- Nothing while loading; once ready, the buffer at its cursor.
  child:wait("the prefetch when ready", "#T.prefetches() >= 1", 5000)
  eq(child:get("T.prefetches()")[1], "p.py 0:0", "after the load, at the cursor")
  local notified = child:get("vim.tbl_filter(function(n) return n.method == 'cria/prefetch' end, T.notifications)")[1]
  eq(notified.params.textDocument.uri, child:get("vim.uri_from_bufnr(0)"), "the buffer's URI")

  -- A new buffer: prefetched when cria attaches (after didOpen).
  child:lua("T.edit('q.py', { 'a = 1', 'b = 2', 'c = 3' })")
  child:wait("q.py prefetched", "T.prefetches()[#T.prefetches()] == 'q.py 0:0'", 5000)

  -- Back to p.py: BufEnter (and BufWinEnter, the same place: one prefetch).
  child:cmd("normal! 3G")
  vim.wait(400)
  local n = #child:get("T.prefetches()")
  child:cmd("buffer p.py")
  child:wait("p.py prefetched on BufEnter", "#T.prefetches() > ...", 5000, n)
  vim.wait(400)
  eq(vim.list_slice(child:get("T.prefetches()"), n + 1), { "p.py 0:0" }, "one prefetch on entering p.py")

  -- The cursor rests in Normal mode (CursorHold).
  child:type("5G$")
  child:wait("a prefetch on CursorHold", "T.prefetches()[#T.prefetches()] == 'p.py 4:31'", 5000)

  -- Typing: no prefetch (the suggestions' own requests warm the prompt).
  n = #child:get("T.prefetches()")
  child:cmd("normal! G")
  child:type("A" .. TYPED)
  child:wait("typed", "T.line() == ...", 5000, TYPED)
  vim.wait(500)
  eq(#child:get("T.prefetches()"), n, "no prefetch in Insert mode")
  child:type("<Esc>")
  child:wait("a prefetch once the cursor rests after typing", "#T.prefetches() > ...", 5000, n)

  -- A buffer cria does not serve: none.
  n = #child:get("T.prefetches()")
  child:lua("T.edit('notes.txt', { 'hello', 'world' })")
  child:type("2G")
  vim.wait(500)
  eq(#child:get("T.prefetches()"), n, "no prefetch for a text file")
end)

test("prefetch: at most once per 250 ms per buffer, not while loading, not when off", function()
  local child = H.child()
  child:lua("vim.o.updatetime = 600000") -- no CursorHold in the middle of this test
  child:lua("T.edit('r.py', ...)", CIRCLE)
  child:wait_ready()
  child:wait("the prefetch when ready", "#T.prefetches() >= 1", 5000)
  vim.wait(300)
  local n = #child:get("T.prefetches()")
  child:lua([[
    local prefetch, buf = require('cria.prefetch'), vim.api.nvim_get_current_buf()
    vim.api.nvim_win_set_cursor(0, { 2, 0 })
    prefetch.send(buf)
    vim.api.nvim_win_set_cursor(0, { 4, 0 })
    prefetch.send(buf)
    prefetch.send(buf)
  ]])
  eq(vim.list_slice(child:get("T.prefetches()"), n + 1), { "r.py 1:0" }, "the first at once")
  child:wait("the second after the interval", "#T.prefetches() == ... + 2", 2000, n)
  eq(child:get("T.prefetches()")[n + 2], "r.py 3:0", "where the cursor is by then")
  local at = child:get("(function() local p = vim.tbl_filter(function(x) return x.method == 'cria/prefetch' end, T.notifications); return { p[#p - 1].at, p[#p].at } end)()")
  ok(at[2] - at[1] >= 240, ("250 ms apart: %d"):format(at[2] - at[1]))
  vim.wait(400)
  eq(#child:get("T.prefetches()"), n + 2, "a repeat at the same place is dropped")

  -- While the model loads: nothing; when it is ready: the current buffer.
  child:lua("T.status({ model = ..., state = 'loading' })", MODEL)
  child:lua("vim.api.nvim_win_set_cursor(0, { 6, 0 }); require('cria.prefetch').send(vim.api.nvim_get_current_buf())")
  vim.wait(400)
  eq(#child:get("T.prefetches()"), n + 2, "none while loading")
  child:lua("T.status({ model = ..., state = 'ready' })", MODEL)
  child:wait("the prefetch after the load", "T.prefetches()[#T.prefetches()] == 'r.py 5:0'", 2000)

  -- Suggestions off: none.
  n = #child:get("T.prefetches()")
  child:cmd("Cria disable")
  child:lua("vim.api.nvim_win_set_cursor(0, { 8, 0 }); require('cria.prefetch').send(vim.api.nvim_get_current_buf())")
  vim.wait(400)
  eq(#child:get("T.prefetches()"), n, "none while suggestions are off")
end)

test("warming: statusline, :Cria status and :checkhealth show it", function()
  local child = H.child()
  child:lua("T.edit('warm.py', { 'x = 1' })")
  child:wait_ready()
  child:lua(
    "T.status({ model = ..., state = 'warming', warming = { uri = vim.uri_from_bufnr(0), percentage = 41.6 }, kvCacheMb = 130.2, kvSlots = 2 })",
    MODEL
  )
  eq(child:get("require('cria').statusline()"), "cria: warming 42%", "statusline")
  child:cmd("Cria status")
  local msg = child:get("T.messages[#T.messages].msg")
  ok(msg:find("warming: warm.py 42%", 1, true), msg)
  ok(msg:find("KV cache: 2 slots, 130 MB", 1, true), msg)
  child:cmd("checkhealth cria")
  local health = table.concat(child:get("vim.api.nvim_buf_get_lines(0, 0, -1, false)"), "\n")
  ok(health:find("warming warm.py 42%, KV cache: 2 slots, 130 MB", 1, true), health)
  child:cmd("bwipeout")
  child:lua("T.status({ model = ..., state = 'warming' })", MODEL)
  eq(child:get("require('cria').statusline()"), "cria: warming", "without a percentage")
  child:lua("T.status({ model = ..., state = 'ready', lastLatencyMs = 80 })", MODEL)
  eq(child:get("require('cria').statusline()"), "cria: ready 80ms", "ready again")
end)

--- A child with suggestions asked for by hand only (<M-]>), its requests
--- spied on (`spy_more`: more to run then), which has typed TYPED at the
--- end of the buffer `name` holding CIRCLE.
local function typed_at_the_end(name, spy_more)
  local child = H.child()
  child:lua([[
    local opts = vim.deepcopy(T.opts)
    opts.auto_trigger = false
    require('cria').setup(opts)
  ]])
  child:lua("local name, lines = ...; T.edit(name, lines)", name, CIRCLE)
  child:wait_ready()
  child:lua("T.spy(); " .. (spy_more or ""))
  child:cmd("normal! G")
  child:type("A" .. TYPED)
  child:wait("typed", "T.line() == ...", 5000, TYPED)
  return child
end

test("an empty answer while warming is asked again once, when warming ends; not after the cursor moved", function()
  local child = typed_at_the_end("reask.py", "T.empty_answers = true")
  local function asked(n)
    child:wait(("%d answered requests"):format(n), "#T.sent('textDocument/inlineCompletion') == ... and T.sent('textDocument/inlineCompletion')[...].done", 5000, n)
  end

  -- Empty while warming, then the cursor moves: no re-ask.
  child:lua("T.status({ model = ..., state = 'warming', warming = { uri = vim.uri_from_bufnr(0), percentage = 10 } })", MODEL)
  child:type("<M-]>")
  asked(1)
  child:type("<Left>")
  child:wait("the cursor moved", "T.cursor()[2] == ...", 5000, #TYPED - 1)
  child:lua("T.status({ model = ..., state = 'ready' })", MODEL)
  vim.wait(300)
  eq(child:get("require('cria.ghost').stats.reasks"), 0, "no re-ask after the cursor moved")
  eq(#child:get("T.sent('textDocument/inlineCompletion')"), 1, "no new request")

  -- Empty while warming, nothing moves: asked again once, when ready.
  child:type("<End>")
  child:wait("the cursor back at the end", "T.cursor()[2] == ...", 5000, #TYPED)
  child:lua("T.status({ model = ..., state = 'warming', warming = { uri = vim.uri_from_bufnr(0), percentage = 50 } })", MODEL)
  child:type("<M-]>")
  asked(2)
  child:lua("T.status({ model = ..., state = 'warming', warming = { uri = vim.uri_from_bufnr(0), percentage = 90 } })", MODEL)
  vim.wait(200)
  eq(child:get("require('cria.ghost').stats.reasks"), 0, "not while still warming")
  child:lua("T.empty_answers = false")
  child:lua("T.status({ model = ..., state = 'ready' })", MODEL)
  child:wait("the re-ask", "require('cria.ghost').stats.reasks == 1", 2000)
  local sent = child:get("T.sent('textDocument/inlineCompletion')")
  eq(#sent, 3, "one more request")
  eq(sent[3].params.position, { line = 8, character = #TYPED }, "at the cursor")
  eq(sent[3].params.context.triggerKind, 1, "as the first was asked (invoked)")
  child:wait_ghost()
  child:lua("T.status({ model = ..., state = 'ready' })", MODEL)
  vim.wait(300)
  eq(child:get("require('cria.ghost').stats.reasks"), 1, "only once")
  eq(#child:get("T.sent('textDocument/inlineCompletion')"), 3, "no further request")
end)

test("a suggestion shown is asked again once its buffer's late answer is cached (a block's first lines, then the whole)", function()
  local child = typed_at_the_end("late.py")
  child:type("<M-]>")
  child:wait_ghost()
  eq(#child:get("T.sent('textDocument/inlineCompletion')"), 1, "one request")

  -- Statuses that say nothing of this buffer's late answer: no re-ask.
  child:lua("T.status({ model = ..., state = 'ready', lastLatencyMs = 90 })", MODEL)
  child:lua("T.status({ model = ..., state = 'ready', lateAnswer = { uri = 'file:///elsewhere.py' } })", MODEL)
  vim.wait(300)
  eq(child:get("require('cria.ghost').stats.reasks"), 0, "no late answer for this buffer yet")

  -- Its late answer is cached: asked again at the cursor, as first asked.
  child:lua("T.status({ model = ..., state = 'ready', lateAnswer = { uri = vim.uri_from_bufnr(0) } })", MODEL)
  child:wait("the re-ask", "require('cria.ghost').stats.reasks == 1", 2000)
  local sent = child:get("T.sent('textDocument/inlineCompletion')")
  eq(#sent, 2, "one more request")
  eq(sent[2].params.position, { line = 8, character = #TYPED }, "at the cursor")
  eq(sent[2].params.context.triggerKind, 1, "as the first was asked (invoked)")
  child:wait("answered", "T.sent('textDocument/inlineCompletion')[2].done", 5000)

  -- After the cursor moved: not asked again.
  child:type("<Left>")
  child:wait("the cursor moved", "T.cursor()[2] == ...", 5000, #TYPED - 1)
  child:lua("T.status({ model = ..., state = 'ready', lateAnswer = { uri = vim.uri_from_bufnr(0) } })", MODEL)
  vim.wait(300)
  eq(child:get("require('cria.ghost').stats.reasks"), 1, "no re-ask after the cursor moved")
  eq(#child:get("T.sent('textDocument/inlineCompletion')"), 2, "no further request")
end)
