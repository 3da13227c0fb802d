-- Ghost text for Neovim 0.10/0.11 (and 0.12 with `native = false`):
-- requests `textDocument/inlineCompletion` itself while you type, shows the
-- suggestion as virtual text (first line at the cursor, the rest as virtual
-- lines below), and inserts it, or a word or line of it, on request.
--
-- A suggestion is kept relative to the cursor: `text` is what would be
-- inserted at (row, col), and `replace` counts the bytes after the cursor on
-- that line (closing brackets, quotes) that its first line replaces.

local api = vim.api
local uv = vim.uv or vim.loop

local config = require("cria.config")
local client_mod = require("cria.client")

local M = {}

M.ns = api.nvim_create_namespace("cria.ghost")

local HL = "CriaSuggestion"

---@class cria.Suggestion
---@field text string       Text to insert at the cursor.
---@field replace integer   Bytes after the cursor its first line replaces.

---@class cria.Shown : cria.Suggestion
---@field row integer       0-based row of the cursor it was shown at.
---@field col integer       0-based byte column.
---@field tick integer      b:changedtick when shown.
---@field after string      The line's text after the cursor when shown.
---@field client_id integer

---@class cria.BufState
---@field augroup integer
---@field timer uv.uv_timer_t|nil
---@field pending {client: vim.lsp.Client, id: integer, seq: integer}|nil
---@field items cria.Suggestion[]|nil
---@field index integer
---@field shown cria.Shown|nil
---@field extmark integer|nil
---@field reask {tick: integer, row: integer, col: integer, trigger_kind: integer, on: "ready"|"late"}|nil  Where to ask once more: an empty answer given while the server was warming (`on = "ready"`), or the last answer shown (`on = "late"`: a block's first lines, whose rest may come as a late answer).

---@type table<integer, cria.BufState>
local buffers = {}
local seq = 0

--- Counters for tests and `:Cria status`.
M.stats = { requests = 0, cancelled = 0, shown = 0, accepted = 0, reasks = 0 }

local function enabled()
  return require("cria").is_enabled()
end

local function in_insert_mode()
  return api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function cursor()
  local pos = api.nvim_win_get_cursor(0)
  return pos[1] - 1, pos[2]
end

local function get_line(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

--- Byte column of an LSP `character` on a line, in the client's encoding.
local function byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  if not ok then
    -- Neovim 0.10: str_byteindex(line, index, use_utf16)
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  if not ok then
    return #line
  end
  return col
end

--- Turns the server's inline completion items into suggestions relative to
--- the cursor at (row, col). Items that do not fit the cursor are dropped.
---@return cria.Suggestion[]
function M.normalize(bufnr, result, encoding, row, col)
  local raw = result and (result.items or result) or {}
  local out = {}
  local line = get_line(bufnr, row)
  for _, item in ipairs(raw) do
    local text = item.insertText
    if type(text) == "table" then
      text = text.value
    end
    if type(text) == "string" then
      local replace = 0
      local ok = true
      if item.range then
        local s, e = item.range.start, item.range["end"]
        local start_col = byte_col(line, s.character, encoding)
        if s.line ~= row or start_col > col then
          ok = false
        else
          -- Text between the range start and the cursor is already typed.
          local typed = line:sub(start_col + 1, col)
          if text:sub(1, #typed) ~= typed then
            ok = false
          else
            text = text:sub(#typed + 1)
          end
          if e.line == row then
            replace = math.max(0, byte_col(line, e.character, encoding) - col)
          elseif e.line > row then
            ok = false -- replacing whole lines after the cursor: not supported
          end
        end
      end
      if ok and vim.trim(text) ~= "" then
        table.insert(out, { text = text, replace = replace })
      end
    end
  end
  return out
end

--- A buffer number, 0 or nil meaning the current buffer.
local function resolve(bufnr)
  if not bufnr or bufnr == 0 then
    return api.nvim_get_current_buf()
  end
  return bufnr
end

local function state(bufnr)
  return buffers[resolve(bufnr)]
end

--- Removes the ghost text (the suggestion is forgotten).
function M.clear(bufnr)
  bufnr = resolve(bufnr)
  local st = state(bufnr)
  if st then
    st.shown = nil
    st.items = nil
    st.extmark = nil
    st.reask = nil
  end
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- Cancels the request in flight and the debounce timer.
function M.cancel(bufnr)
  local st = state(bufnr)
  if not st then
    return
  end
  if st.timer then
    st.timer:stop()
  end
  local pending = st.pending
  st.pending = nil
  if pending and pending.id then
    M.stats.cancelled = M.stats.cancelled + 1
    pcall(client_mod.call, pending.client, "cancel_request", pending.id)
  end
end

local function display(s, tabstop)
  return (s:gsub("\t", string.rep(" ", tabstop)))
end

--- Draws `st.shown`.
local function render(bufnr, st)
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  st.extmark = nil
  local shown = st.shown
  if not shown then
    return
  end
  local tabstop = vim.bo[bufnr].tabstop
  local lines = vim.split(shown.text, "\n", { plain = true })
  local first = lines[1]
  local line = get_line(bufnr, shown.row)
  if shown.replace > 0 then
    -- The replaced characters stay visible after the cursor until accepted:
    -- do not draw them twice.
    local rest = vim.trim(line:sub(shown.col + 1, shown.col + shown.replace))
    local trimmed = first:gsub("%s+$", "")
    if rest ~= "" and trimmed:sub(-#rest) == rest then
      first = trimmed:sub(1, #trimmed - #rest)
    end
  end
  local at_eol = shown.col >= #line
  local opts = {
    hl_mode = "combine",
    priority = 200,
    virt_text_pos = (config.options.inline and not at_eol) and "inline" or "overlay",
  }
  if first ~= "" then
    opts.virt_text = { { display(first, tabstop), HL } }
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { display(lines[i], tabstop), HL } })
    end
  end
  if not opts.virt_text and not opts.virt_lines then
    return
  end
  st.extmark = api.nvim_buf_set_extmark(bufnr, M.ns, shown.row, math.min(shown.col, #line), opts)
end

--- Shows suggestion `index` of the current list at the cursor.
local function show(bufnr, st, index, client_id)
  local item = st.items and st.items[index]
  if not item then
    M.clear(bufnr)
    return
  end
  st.index = index
  local row, col = cursor()
  st.shown = {
    text = item.text,
    replace = item.replace,
    row = row,
    col = col,
    tick = api.nvim_buf_get_changedtick(bufnr),
    after = get_line(bufnr, row):sub(col + 1),
    client_id = client_id or (st.shown and st.shown.client_id),
  }
  M.stats.shown = M.stats.shown + 1
  render(bufnr, st)
end

--- Asks the server for a suggestion at the cursor now.
---@param bufnr integer|nil
---@param trigger_kind integer|nil 1 = invoked, 2 = automatic
function M.request(bufnr, trigger_kind)
  bufnr = resolve(bufnr)
  local st = state(bufnr)
  if not st or not enabled() or api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
    return
  end
  if config.options.hide_during_completion and vim.fn.pumvisible() == 1 then
    return
  end
  local client = client_mod.get(bufnr)
  if not client then
    return
  end
  M.cancel(bufnr)
  seq = seq + 1
  local my_seq = seq
  local row, col = cursor()
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local encoding = client.offset_encoding or "utf-16"
  local params = vim.lsp.util.make_position_params(0, encoding)
  params.context = { triggerKind = trigger_kind or 2 }
  local ok, id = client_mod.call(client, "request", "textDocument/inlineCompletion", params, function(err, result)
    local current = state(bufnr)
    if not current or not current.pending or current.pending.seq ~= my_seq then
      return -- superseded
    end
    current.pending = nil
    if err or not enabled() or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    -- Stale: the buffer changed or the cursor moved since the request.
    if api.nvim_get_current_buf() ~= bufnr or not in_insert_mode() then
      return
    end
    local r, c = cursor()
    if r ~= row or c ~= col or api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return
    end
    if config.options.hide_during_completion and vim.fn.pumvisible() == 1 then
      return
    end
    local items = M.normalize(bufnr, result, encoding, row, col)
    if #items == 0 then
      M.clear(bufnr)
      -- Empty because the server is busy warming a prompt: ask again once
      -- it is ready, if the cursor has not moved by then.
      local status = require("cria.status").by_client[client.id]
      if status and status.state == "warming" then
        current.reask = { tick = tick, row = row, col = col, trigger_kind = trigger_kind or 2, on = "ready" }
      end
      return
    end
    current.items = items
    show(bufnr, current, 1, client.id)
    -- It may be a block's first lines, shown while the rest is written: ask
    -- once more when the server says the whole answer is cached.
    current.reask = { tick = tick, row = row, col = col, trigger_kind = trigger_kind or 2, on = "late" }
  end, bufnr)
  if ok and id then
    M.stats.requests = M.stats.requests + 1
    st.pending = { client = client, id = id, seq = my_seq }
  end
end

--- Restarts the debounce timer; the request goes out when typing pauses.
function M.schedule(bufnr)
  bufnr = resolve(bufnr)
  local st = state(bufnr)
  if not st or not enabled() or not config.options.auto_trigger then
    return
  end
  if not st.timer then
    st.timer = uv.new_timer()
  end
  st.timer:stop()
  st.timer:start(
    config.options.debounce_ms,
    0,
    vim.schedule_wrap(function()
      if buffers[bufnr] == st then
        M.request(bufnr, 2)
      end
    end)
  )
end

--- After a change or cursor move: keep the suggestion when the user typed
--- its next characters, otherwise drop it and ask again.
local function on_change(bufnr)
  local st = state(bufnr)
  if not st then
    return
  end
  local shown = st.shown
  if shown then
    local row, col = cursor()
    local tick = api.nvim_buf_get_changedtick(bufnr)
    if row == shown.row and col == shown.col and tick == shown.tick then
      return -- nothing happened (or our own accept, already accounted for)
    end
    if row == shown.row and col > shown.col then
      local line = get_line(bufnr, row)
      local typed = line:sub(shown.col + 1, col)
      local rest = shown.text:sub(#typed + 1)
      if
        shown.text:sub(1, #typed) == typed
        and line:sub(col + 1) == shown.after
        and not typed:find("\n", 1, true)
        and vim.trim(rest) ~= ""
      then
        shown.text = rest
        shown.col = col
        shown.tick = tick
        render(bufnr, st)
        return
      end
    end
  end
  M.clear(bufnr)
  M.cancel(bufnr)
  M.schedule(bufnr)
end

--- After a `cria/status`: asks once more, if nothing moved since (any edit
--- or cursor move clears the wish, see M.clear), where an answer came back
--- empty while warming, once warming is over; where an answer was shown,
--- once the status says a late answer for the buffer is cached
--- (`lateAnswer`: the whole block whose first lines were shown).
---@param status table
function M.on_status(status)
  if status.state == "warming" then
    return
  end
  local late_uri = type(status.lateAnswer) == "table" and status.lateAnswer.uri or nil
  for bufnr, st in pairs(buffers) do
    local wish = st.reask
    if wish and wish.on == "late" and late_uri ~= vim.uri_from_bufnr(bufnr) then
      wish = nil -- not this buffer's late answer: keep waiting for it
    else
      st.reask = nil
    end
    if wish and status.state == "ready" and api.nvim_get_current_buf() == bufnr and in_insert_mode() then
      local row, col = cursor()
      if row == wish.row and col == wish.col and api.nvim_buf_get_changedtick(bufnr) == wish.tick then
        M.stats.reasks = M.stats.reasks + 1
        M.request(bufnr, wish.trigger_kind)
      end
    end
  end
end

--- Whether a suggestion is shown in the current buffer.
function M.is_visible(bufnr)
  local st = state(bufnr)
  return st ~= nil and st.shown ~= nil
end

--- The suggestion shown in a buffer (for tests and statuslines).
---@return cria.Shown|nil
function M.current(bufnr)
  local st = state(bufnr)
  return st and st.shown
end

--- The next word of a suggestion: leading whitespace plus one run of word
--- characters, or one run of other non-space characters.
function M.next_word(text)
  local ws = text:match("^%s*")
  local rest = text:sub(#ws + 1)
  local word = rest:match("^[%w_]+") or rest:match("^[^%w_%s]+") or ""
  return ws .. word
end

--- The rest of the suggestion's first line; if that is empty (the
--- suggestion starts on the next line), the line break and the next line.
function M.next_line(text)
  local nl = text:find("\n", 1, true)
  if not nl then
    return text
  end
  if vim.trim(text:sub(1, nl - 1)) ~= "" then
    return text:sub(1, nl - 1)
  end
  local nl2 = text:find("\n", nl + 1, true)
  return nl2 and text:sub(1, nl2 - 1) or text
end

--- Inserts `part` (a prefix of `text`) at (row, col). The first line of the
--- suggestion replaces `replace` bytes after the cursor once `part` covers
--- that whole line. Moves the cursor after the insertion. Returns the new
--- cursor (0-based row, byte col).
function M.insert(bufnr, row, col, replace, text, part)
  local first_line_end = text:find("\n", 1, true) or (#text + 1)
  local covers_first_line = #part >= first_line_end - 1
  local end_col = col + (covers_first_line and replace or 0)
  local line = get_line(bufnr, row)
  end_col = math.min(end_col, #line)
  local lines = vim.split(part, "\n", { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, end_col, lines)
  local new_row = row + #lines - 1
  local new_col = (#lines == 1 and col or 0) + #lines[#lines]
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    win = vim.fn.bufwinid(bufnr)
  end
  if win ~= -1 then
    api.nvim_win_set_cursor(win, { new_row + 1, new_col })
  end
  return new_row, new_col, covers_first_line
end

--- Accepts the whole suggestion ("all"), its next word ("word") or the rest
--- of its line ("line"). Returns false when nothing is shown.
---@param kind "all"|"word"|"line"|nil
---@return boolean
function M.accept(kind)
  kind = kind or "all"
  local bufnr = api.nvim_get_current_buf()
  local st = state(bufnr)
  local shown = st and st.shown
  if not shown then
    return false
  end
  local text = shown.text
  local part = kind == "word" and M.next_word(text) or kind == "line" and M.next_line(text) or text
  if part == "" then
    part = text
  end
  M.cancel(bufnr)
  local row, col, consumed = M.insert(bufnr, shown.row, shown.col, shown.replace, text, part)
  local rest = text:sub(#part + 1)
  M.stats.accepted = M.stats.accepted + 1
  local client = shown.client_id and vim.lsp.get_client_by_id(shown.client_id) or client_mod.get(bufnr)
  if client then
    client_mod.accepted(client, bufnr, {
      uri = vim.uri_from_bufnr(bufnr),
      kind = kind,
      text = part,
      complete = rest == "",
    })
  end
  if vim.trim(rest) == "" then
    M.clear(bufnr)
    return true
  end
  st.items = { { text = rest, replace = consumed and 0 or shown.replace } }
  st.index = 1
  st.shown = {
    text = rest,
    replace = consumed and 0 or shown.replace,
    row = row,
    col = col,
    tick = api.nvim_buf_get_changedtick(bufnr),
    after = get_line(bufnr, row):sub(col + 1),
    client_id = shown.client_id,
  }
  render(bufnr, st)
  return true
end

--- Hides the suggestion; returns false when nothing was shown.
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  local visible = M.is_visible(bufnr)
  M.cancel(bufnr)
  M.clear(bufnr)
  return visible
end

--- Shows the next (or previous, with `step` -1) suggestion; asks the server
--- when none is shown.
function M.cycle(step)
  local bufnr = api.nvim_get_current_buf()
  local st = state(bufnr)
  if not st then
    return
  end
  if not st.shown or not st.items or #st.items == 0 then
    M.request(bufnr, 1)
    return
  end
  local n = #st.items
  show(bufnr, st, (st.index - 1 + step) % n + 1)
end

--- Starts ghost text in a buffer (on LspAttach of cria).
function M.attach(bufnr)
  if buffers[bufnr] then
    return
  end
  local group = api.nvim_create_augroup("cria.ghost." .. bufnr, { clear = true })
  local st = { augroup = group, index = 1 }
  buffers[bufnr] = st
  api.nvim_create_autocmd({ "TextChangedI", "CursorMovedI" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      on_change(bufnr)
    end,
  })
  api.nvim_create_autocmd("InsertEnter", {
    group = group,
    buffer = bufnr,
    callback = function()
      M.schedule(bufnr)
    end,
  })
  api.nvim_create_autocmd("TextChangedP", {
    group = group,
    buffer = bufnr,
    callback = function()
      if config.options.hide_during_completion then
        M.clear(bufnr)
        M.cancel(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd("CompleteDone", {
    group = group,
    buffer = bufnr,
    callback = function()
      M.schedule(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.cancel(bufnr)
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "BufUnload", "BufWipeout" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  -- Attached while already typing (e.g. the server started on InsertEnter).
  if api.nvim_get_current_buf() == bufnr and in_insert_mode() then
    M.schedule(bufnr)
  end
end

--- Stops ghost text in a buffer.
function M.detach(bufnr)
  local st = buffers[bufnr]
  if not st then
    return
  end
  M.cancel(bufnr)
  M.clear(bufnr)
  if st.timer then
    st.timer:stop()
    if not st.timer:is_closing() then
      st.timer:close()
    end
  end
  pcall(api.nvim_del_augroup_by_id, st.augroup)
  buffers[bufnr] = nil
end

--- Whether ghost text runs in a buffer.
function M.attached(bufnr)
  return state(bufnr) ~= nil
end

--- Clears every buffer's suggestion (when toggled off).
function M.clear_all()
  for bufnr in pairs(buffers) do
    M.cancel(bufnr)
    M.clear(bufnr)
  end
end

--- Defines the highlight group unless the colour scheme sets it: Comment's
--- colours, and where Comment has no terminal colour (no 'termguicolors'),
--- grey italics.
function M.highlights()
  local comment = api.nvim_get_hl(0, { name = "Comment", link = false })
  api.nvim_set_hl(0, HL, {
    default = true,
    fg = comment.fg or "Grey",
    italic = comment.italic,
    ctermfg = comment.ctermfg or 8,
    cterm = comment.ctermfg and comment.cterm or { italic = true },
  })
end

return M
