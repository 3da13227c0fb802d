-- cria.nvim against the real server and SmolLM2, in a real headless Neovim.
local H = ...
local test, eq, ok = H.test, H.eq, H.ok

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

--- A child editing circle.py, ready, in insert mode at the end of TYPED.
local function typing_circle(env)
  local child = H.child(env)
  child:lua("T.edit('circle.py', ...)", CIRCLE)
  child:wait_ready()
  child:lua("T.spy()")
  child:cmd("normal! G")
  child:type("A" .. TYPED)
  child:wait("the typed line", "T.line() == ...", 10000, TYPED)
  return child
end

--- The server's text equals the buffer's.
local function check_in_sync(child, what)
  local buffer = child:get("T.buffer_text()")
  eq(child:get("T.document_text()"), buffer, (what or "") .. ": cria/documentText equals the buffer")
end

test("checkhealth: binary, version and model found", function()
  local child = H.child()
  child:cmd("checkhealth cria")
  local text = table.concat(child:get("vim.api.nvim_buf_get_lines(0, 0, -1, false)"), "\n")
  ok(text:find("binary: " .. vim.env.CRIA_BIN, 1, true), "binary reported:\n" .. text)
  ok(text:find("version: cria %d+%.%d+"), "version reported:\n" .. text)
  ok(text:find("model `smollm2-135m-instruct`: llama", 1, true), "model resolved:\n" .. text)
  ok(not text:find("ERROR"), "no errors:\n" .. text)
end)

test("starts for a Python buffer, reports loading then ready, :Cria status", function()
  local child = H.child()
  child:lua("T.edit('a.py', { 'x = 1' })")
  child:wait_ready()
  eq(child:get("#require('cria.client').clients()"), 1, "one cria client")
  eq(child:get("T.client().offset_encoding"), "utf-8", "negotiated encoding")
  eq(child:get("require('cria').statusline()"), "cria: ready", "statusline")
  child:cmd("Cria status")
  local msg = child:get("T.messages[#T.messages].msg")
  ok(msg:find("smollm2-135m-instruct", 1, true) and msg:find("ready", 1, true), msg)
  -- A second buffer shares the same server; a text file gets none.
  child:lua("T.edit('b.py', { 'y = 2' })")
  child:wait("b.py attached", "T.client() ~= nil", 10000)
  eq(child:get("#require('cria.client').clients()"), 1, "still one cria client")
  -- setup() again sends changed settings to the running server.
  child:lua([[
    T.notified = {}
    local client = T.client()
    local notify = client.notify
    client.notify = function(self, method, params)
      table.insert(T.notified, { method = method, params = params })
      return notify(self, method, params)
    end
    local opts = vim.deepcopy(T.opts)
    opts.settings.maxTokens = 16
    require('cria').setup(opts)
  ]])
  local notified = child:get("vim.tbl_filter(function(n) return n.method == 'workspace/didChangeConfiguration' end, T.notified)")
  eq(#notified, 1, "one didChangeConfiguration")
  eq(notified[1].params.settings.cria.maxTokens, 16, "the new setting")
  eq(notified[1].params.settings.cria.model, "smollm2-135m-instruct", "the model kept")
  child:lua("T.edit('notes.txt', { 'hello' })")
  eq(child:get("T.client() == nil"), true, "no cria client for a text file")
  eq(child:get("require('cria').statusline()"), "", "empty statusline where cria is not attached")
  child:cmd("Cria bogus")
  ok(child:get("T.messages[#T.messages].msg"):find("unknown subcommand", 1, true), "unknown subcommand reported")
end)

test("ghost text appears while typing and <Tab> accepts it", function()
  local child = typing_circle()
  local ghost = child:wait_ghost()
  local marks = child:get("T.ghost_marks()")
  eq(#marks, 1, "one extmark")
  local details = marks[1][4]
  local first = vim.split(ghost, "\n", { plain = true })[1]
  if first ~= "" then
    eq(details.virt_text[1][1], first, "first line drawn at the cursor")
    eq(details.virt_text[1][2], "CriaSuggestion", "highlight group")
  end
  eq(marks[1][2], 8, "on the cursor line")
  eq(marks[1][3], #TYPED, "at the cursor")
  local sent = child:get("T.sent('textDocument/inlineCompletion')")
  eq(sent[#sent].params.position, { line = 8, character = #TYPED }, "requested at the cursor")

  child:type("<Tab>")
  local expected = vim.list_slice(CIRCLE, 1, 8)
  vim.list_extend(expected, vim.split(TYPED .. ghost, "\n", { plain = true }))
  child:wait("the suggestion inserted", "vim.deep_equal(T.lines(), ...)", 10000, expected)
  local last = expected[#expected]
  eq(child:get("T.cursor()"), { #expected, #last }, "cursor after the inserted text")
  eq(child:get("T.mode()"), "i", "still in insert mode")
  check_in_sync(child, "after accepting")
  -- The server heard about it.
  child:wait("cria.accepted answered", "T.sent('workspace/executeCommand')[1] and T.sent('workspace/executeCommand')[1].done", 10000)
  local exec = child:get("T.sent('workspace/executeCommand')[1]")
  eq(exec.params.command, "cria.accepted", "command")
  eq(exec.params.arguments[1].text, ghost, "accepted text reported")
  eq(exec.err, nil, "no error from cria.accepted")
  ok(child:get("require('cria').statusline()"):match("^cria: ready %d+ms$"), "statusline shows the latency")
end)

test("<Tab> without a suggestion inserts indentation", function()
  local child = H.child()
  child:lua("T.edit('indent.py', { 'def f():', '' })")
  child:wait_ready()
  child:lua("vim.bo.expandtab = true; vim.bo.shiftwidth = 4; vim.bo.softtabstop = 4; vim.bo.indentexpr = ''")
  child:cmd("normal! G")
  child:type("i<Tab>")
  child:wait("spaces inserted", "T.line() == '    '", 5000)
  child:type("<Esc>")
  child:lua("vim.bo.expandtab = false; vim.bo.softtabstop = 0; vim.bo.autoindent = false")
  child:type("o<Tab>x")
  child:wait("a tab inserted", "T.line() == '\\tx'", 5000)
  -- In a buffer cria does not serve, too.
  child:type("<Esc>")
  child:lua("T.edit('plain.txt', { '' })")
  child:type("i<Tab>y")
  child:wait("tab in a text file", "T.line():find('y$') ~= nil and T.line():find('^%s+y$') ~= nil", 5000)
  child:type("<Esc>")
  child:cmd("buffer indent.py")
  check_in_sync(child, "python buffer")
end)

test("a key's earlier mapping is its fallback", function()
  local child = H.child()
  child:lua([[
    vim.keymap.set('i', '<C-l>', function() return 'LL' end, { expr = true })
    local opts = vim.deepcopy(T.opts)
    opts.keymaps = { dismiss = '<C-l>' }
    require('cria').setup(opts)
  ]])
  child:lua("T.edit('fallback.py', { '' })")
  child:wait_ready()
  child:type("i<C-l>")
  child:wait("the earlier mapping ran", "T.line() == 'LL'", 5000)
end)

test("a multi-line suggestion is drawn below the cursor and accepted whole", function()
  local child = H.child()
  local lines = vim.list_slice(CIRCLE, 1, 7)
  table.insert(lines, "")
  child:lua("T.edit('multi.py', ...)", lines)
  child:wait_ready()
  child:cmd("normal! G")
  local def = "def circle_circumference(radius):"
  child:type("A" .. def)
  child:wait("typed", "T.line() == ...", 5000, def)
  local ghost = child:wait_ghost()
  local ghost_lines = vim.split(ghost, "\n", { plain = true })
  ok(#ghost_lines >= 2, "a multi-line suggestion: " .. vim.inspect(ghost))
  local mark = child:get("T.ghost_marks()")[1][4]
  eq(#mark.virt_lines, #ghost_lines - 1, "the lines after the first as virtual lines")
  eq(mark.virt_lines[1][1][1], ghost_lines[2], "second line drawn below")
  child:type("<Tab>")
  local expected = vim.list_slice(lines, 1, 7)
  vim.list_extend(expected, vim.split(def .. ghost, "\n", { plain = true }))
  child:wait("all lines inserted", "vim.deep_equal(T.lines(), ...)", 10000, expected)
  eq(child:get("T.cursor()"), { #expected, #expected[#expected] }, "cursor at the end of the last line")
  check_in_sync(child, "after a multi-line accept")
end)

test("accept word, then line, keeps the rest shown", function()
  local child = typing_circle()
  local ghost = child:wait_ghost()
  local word = child:get("require('cria.ghost').next_word(...)", ghost)
  ok(#word > 0 and #word < #ghost or ghost == word, "a word to accept")
  child:type("<M-Right>")
  child:wait("the word inserted", "T.line() == ...", 10000, TYPED .. word)
  local rest = ghost:sub(#word + 1)
  if vim.trim(rest) ~= "" then
    eq(child:get("T.ghost_text()"), rest, "the rest still shown")
    local line = child:get("require('cria.ghost').next_line(...)", rest)
    child:type("<M-Down>")
    local expected_lines = vim.split(TYPED .. word .. line, "\n", { plain = true })
    child:wait("the line inserted", "T.lines()[9] == ... and #T.lines() == 8 + " .. #expected_lines, 10000, expected_lines[1])
    eq(vim.list_slice(child:get("T.lines()"), 9), expected_lines, "lines after accepting a line")
  end
  check_in_sync(child, "after partial accepts")
  eq(#child:get("T.sent('workspace/executeCommand')"), vim.trim(rest) ~= "" and 2 or 1, "one cria.accepted per accept")
end)

test("typing the suggestion's next characters keeps it; moving the cursor or <C-]> clears it", function()
  local child = typing_circle()
  local ghost = child:wait_ghost()
  local requests = #child:get("T.sent('textDocument/inlineCompletion')")
  local next_char = ghost:sub(1, 1)
  if next_char ~= "\n" and #vim.trim(ghost:sub(2)) > 0 then
    child:type(next_char == "<" and "<lt>" or next_char)
    child:wait("the rest shown after typing through", "T.ghost_text() == ...", 5000, ghost:sub(2))
    eq(#child:get("T.sent('textDocument/inlineCompletion')"), requests, "no new request while typing through")
  end
  -- Moving the cursor clears it (and asks again after the pause).
  child:type("<Left>")
  child:wait("ghost cleared by <Left>", "#T.ghost_marks() == 0", 2000)
  -- Back at the end of the line: a new suggestion, dismissed with <C-]>.
  child:type("<End>")
  child:wait_ghost()
  local before = child:get("T.lines()")
  child:type("<C-]>")
  child:wait("ghost dismissed", "#T.ghost_marks() == 0", 2000)
  eq(child:get("T.lines()"), before, "dismiss leaves the text alone")
  eq(child:get("T.mode()"), "i", "still in insert mode")
end)

test("closing characters after the cursor: drawn inline, replaced on accept", function()
  local child = H.child()
  child:lua("T.edit('closing.py', ...)", CIRCLE)
  child:wait_ready()
  child:lua("T.spy()")
  child:cmd("normal! G")
  local typed = "    print(math.pi * radius)"
  child:type("A" .. typed .. "<Left>")
  child:wait("cursor before the parenthesis", "T.cursor()[2] == ...", 5000, #typed - 1)
  local ghost = child:wait_ghost()
  local mark = child:get("T.ghost_marks()")[1]
  eq({ mark[2], mark[3] }, { 8, #typed - 1 }, "at the cursor")
  eq(mark[4].virt_text_pos, "inline", "inline: the parenthesis moves right")
  local sent = child:get("T.sent('textDocument/inlineCompletion')")
  local result = sent[#sent].result
  local item = (result.items or result)[1]
  -- A range that covers more than the cursor replaces text after it.
  local replaces = item.range ~= nil
    and (item.range["end"].line ~= item.range.start.line or item.range["end"].character ~= item.range.start.character)
  if replaces then
    -- The item covers the ")" after the cursor: it is not drawn twice.
    eq(item.range["end"], { line = 8, character = #typed }, "the range ends after the parenthesis")
    local first = vim.split(ghost, "\n", { plain = true })[1]
    eq(mark[4].virt_text[1][1], (first:gsub("%s+$", "")):sub(1, -2), "drawn without the closing parenthesis")
  end
  child:type("<Tab>")
  child:wait("accepted", "T.lines()[9] ~= ...", 10000, typed)
  local expected = vim.list_slice(CIRCLE, 1, 8)
  vim.list_extend(expected, vim.split(typed:sub(1, -2) .. ghost .. (replaces and "" or ")"), "\n", { plain = true }))
  eq(child:get("T.lines()"), expected, "the suggestion replaced the parenthesis")
  check_in_sync(child, "after replacing the closing parenthesis")
end)

test("a request made stale by typing is cancelled", function()
  local child = H.child()
  child:lua("T.edit('stale.py', ...)", CIRCLE)
  child:wait_ready()
  child:lua("T.spy()")
  child:cmd("normal! G")
  child:type("A    return 2")
  local typed = "    return 2"
  -- The request in flight when the next key comes is cancelled. (Retried
  -- if a request happened to finish before the key arrived.)
  local cancelled = false
  for _, more in ipairs({ " * math.pi", " * ra", "d" }) do
    local pending = child:wait("a request in flight", "T.pending_id()", 10000)
    child:type(more)
    typed = typed .. more
    child:wait("the typed text", "T.line() == ...", 5000, typed)
    local done_first = child:get("(function(id) for _, r in ipairs(T.requests) do if r.id == id then return r.done == true and not vim.tbl_contains(T.cancels, id) end end end)(...)", pending)
    if not done_first then
      child:wait("the stale request cancelled", "vim.tbl_contains(T.cancels, ...)", 5000, pending)
      cancelled = true
      break
    end
  end
  ok(cancelled, "a stale request was cancelled")
  local ghost = child:wait_ghost()
  ok(#ghost > 0, "a suggestion for the latest text")
  local last = child:get("T.sent('textDocument/inlineCompletion')")
  eq(last[#last].params.position.character, #typed, "the shown suggestion was asked at the cursor")
end)

test(":Cria toggle turns suggestions off and on", function()
  local child = H.child()
  child:lua("T.edit('toggle.py', ...)", CIRCLE)
  child:wait_ready()
  child:lua("T.spy()")
  child:cmd("Cria toggle")
  eq(child:get("require('cria').is_enabled()"), false, "off")
  eq(child:get("require('cria').statusline()"), "cria: off", "statusline")
  child:cmd("normal! G")
  child:type("A" .. TYPED)
  child:wait("typed", "T.line() == ...", 5000, TYPED)
  vim.wait(1000)
  eq(#child:get("T.sent('textDocument/inlineCompletion')"), 0, "no requests while off")
  eq(#child:get("T.ghost_marks()"), 0, "no ghost text while off")
  child:type("<Tab>")
  child:wait("Tab inserted a tab while off", "T.line():sub(-1) ~= 'd'", 5000)
  child:type("<BS>")
  child:wait("the tab deleted", "T.line() == ...", 5000, TYPED)
  -- Turning suggestions on asks for one at the cursor.
  child:cmd("CriaToggle")
  eq(child:get("require('cria').is_enabled()"), true, "on again")
  child:wait_ghost()
  -- Leaving insert mode clears it.
  child:type("<Esc>")
  child:wait("ghost cleared on InsertLeave", "#T.ghost_marks() == 0 and T.mode() == 'n'", 2000)
end)

test(":Cria restart starts a fresh server", function()
  local child = H.child()
  child:lua("T.edit('restart.py', { 'x = 1' })")
  child:wait_ready()
  local old = child:get("T.client().id")
  child:cmd("Cria restart")
  child:wait("a new client", "T.client() ~= nil and T.client().id ~= ...", 30000, old)
  child:wait_ready()
  eq(child:get("#require('cria.client').clients()"), 1, "one client after restart")
  check_in_sync(child, "after restart")
end)

test("multi-byte text stays in sync and accepts at the right byte", function()
  local child = H.child()
  child:lua("T.edit('naive.py', ...)", {
    "# café → 😀 naïve",
    "def naïve_sum(values):",
    "    total = 0  # ∑",
    "    for v in values:",
    "        total += v",
    "",
  })
  child:wait_ready()
  child:cmd("normal! G")
  child:type("A    ré = '😀→é'; return tot")
  local typed = "    ré = '😀→é'; return tot"
  child:wait("typed", "T.line() == ...", 5000, typed)
  check_in_sync(child, "after typing multi-byte text")
  local ghost = child:wait_ghost()
  eq(child:get("T.ghost_marks()")[1][3], #typed, "ghost at the cursor's byte column")
  child:type("<Tab>")
  local first = vim.split(typed .. ghost, "\n", { plain = true })[1]
  child:wait("accepted", "T.lines()[6] == ...", 10000, first)
  check_in_sync(child, "after accepting")
  -- Edits in the middle of multi-byte text.
  child:type("<Esc>")
  child:cmd("normal! 1G0f→")
  child:type("i⚡<Esc>")
  child:cmd("normal! 3G$")
  child:type("a∫<Esc>")
  child:wait("edited", "T.lines()[1] == '# café ⚡→ 😀 naïve'", 5000)
  check_in_sync(child, "after multi-byte edits")
end)

test("vim.g.cria without setup() starts cria", function()
  local child = H.child({ CRIA_TEST_MODE = "global" })
  child:lua("T.edit('global.py', { 'x = 1' })")
  child:wait_ready()
  eq(child:get("require('cria.config').options.model"), "smollm2-135m-instruct", "options from vim.g.cria")
end)

test("vim.lsp.enable('cria') uses lsp/cria.lua", function()
  local child = H.child({ CRIA_TEST_MODE = "enable" })
  child:lua("T.edit('enable.py', { 'x = 1' })")
  vim.wait(300)
  eq(child:get("T.client() == nil"), true, "auto_start = false starts nothing")
  eq(child:get("vim.lsp.config.cria.cmd"), { vim.env.CRIA_BIN, "lsp" }, "lsp/cria.lua command")
  eq(child:get("vim.lsp.config.cria.init_options.model"), "smollm2-135m-instruct", "settings in init_options")
  child:lua("vim.lsp.enable('cria')")
  child:wait_ready()
  child:cmd("normal! G")
  child:type("o" .. TYPED)
  child:wait_ghost()
end)

--- Messages at WARN or above.
local function warnings(child)
  return child:get("vim.tbl_filter(function(m) return (m.level or 0) >= vim.log.levels.WARN end, T.messages)")
end

test("default options: the settings go as a JSON object, and no warning shows", function()
  local child = H.child({ CRIA_TEST_MODE = "defaults" })
  child:lua("T.edit('defaults.py', { 'x = 1' })")
  child:wait_ready()
  eq(child:get("vim.json.encode(T.client().config.init_options)"), "{}", "initializationOptions")
  eq(child:get("vim.json.encode(require('cria.config').server_settings())"), "{}", "didChangeConfiguration settings")
  -- A settings problem is shown right after initialize, before the model is ready.
  child:cmd("Cria status")
  eq(warnings(child), {}, "no warning or error")
  local messages = child:get("vim.fn.execute('messages')")
  ok(not messages:find("LSP[cria]", 1, true), "no message from the server: " .. messages)
end)

test("CriaSuggestion has a terminal colour, also after a colour scheme change", function()
  local child = H.child()
  local hl = child:get("vim.api.nvim_get_hl(0, { name = 'CriaSuggestion', link = false })")
  ok(type(hl.ctermfg) == "number", "ctermfg: " .. vim.inspect(hl))
  ok(hl.fg ~= nil, "a GUI colour too: " .. vim.inspect(hl))
  child:lua("vim.o.termguicolors = false; vim.cmd.colorscheme('default')")
  hl = child:get("vim.api.nvim_get_hl(0, { name = 'CriaSuggestion', link = false })")
  ok(type(hl.ctermfg) == "number", "ctermfg after :colorscheme: " .. vim.inspect(hl))
  -- A colour scheme's own definition wins.
  child:lua("vim.api.nvim_set_hl(0, 'CriaSuggestion', { ctermfg = 5 }); require('cria.ghost').highlights()")
  eq(child:get("vim.api.nvim_get_hl(0, { name = 'CriaSuggestion' }).ctermfg"), 5, "a colour scheme's definition kept")
end)
