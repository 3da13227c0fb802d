-- `cria/prefetch`: tells the server where the cursor is before you type, so
-- it computes ("warms") the prompt while you read rather than on the first
-- keystroke. Sent for a buffer cria serves when it is attached (right after
-- didOpen), when it is entered or shown in a window, when the cursor rests
-- in Normal mode (CursorHold, after 'updatetime') and when the model has
-- finished loading. At most once per `M.interval_ms` per buffer, only while
-- the model is ready and suggestions are on.

local api = vim.api
local uv = vim.uv or vim.loop

local client_mod = require("cria.client")

local M = {}

--- The least time between two prefetches of one buffer.
M.interval_ms = 250

---@class cria.PrefetchState
---@field augroup integer
---@field timer uv.uv_timer_t|nil
---@field last {at: integer, tick: integer, row: integer, col: integer}|nil

---@type table<integer, cria.PrefetchState>
local buffers = {}

--- Counter for tests.
M.stats = { sent = 0 }

--- Whether the model of the buffer's client is ready (or warming another prompt).
local function ready(client)
  local s = require("cria.status").by_client[client.id]
  return s ~= nil and (s.state == "ready" or s.state == "warming")
end

--- The window showing a buffer: the current one if it does, else the first.
local function window_of(bufnr)
  if api.nvim_get_current_buf() == bufnr then
    return api.nvim_get_current_win()
  end
  local win = vim.fn.bufwinid(bufnr)
  return win ~= -1 and win or nil
end

local send

--- Sends again when the last prefetch is `M.interval_ms` old.
local function defer(bufnr, st, delay)
  if not st.timer then
    st.timer = uv.new_timer()
  end
  st.timer:stop()
  st.timer:start(
    delay,
    0,
    vim.schedule_wrap(function()
      if buffers[bufnr] == st then
        send(bufnr)
      end
    end)
  )
end

--- Prefetches a buffer at its window's cursor now, or once the last
--- prefetch is `M.interval_ms` old; a repeat of that one is dropped.
---@param bufnr integer
function send(bufnr)
  local st = buffers[bufnr]
  if not st or not api.nvim_buf_is_valid(bufnr) or not require("cria").is_enabled() then
    return
  end
  local client = client_mod.get(bufnr)
  local win = window_of(bufnr)
  if not client or not win or not ready(client) then
    return
  end
  local pos = api.nvim_win_get_cursor(win)
  local row, col = pos[1] - 1, pos[2]
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local now = uv.now()
  local last = st.last
  if last and now - last.at < M.interval_ms then
    if last.tick ~= tick or last.row ~= row or last.col ~= col then
      defer(bufnr, st, M.interval_ms - (now - last.at))
    end
    return
  end
  if st.timer then
    st.timer:stop()
  end
  st.last = { at = now, tick = tick, row = row, col = col }
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding or "utf-16")
  M.stats.sent = M.stats.sent + 1
  client_mod.call(client, "notify", "cria/prefetch", {
    textDocument = { uri = params.textDocument.uri },
    position = params.position,
  })
end
M.send = send

--- Starts prefetching for a buffer (on LspAttach of cria); prefetches it
--- now when it is the current one.
function M.attach(bufnr)
  if buffers[bufnr] then
    return
  end
  local group = api.nvim_create_augroup("cria.prefetch." .. bufnr, { clear = true })
  buffers[bufnr] = { augroup = group }
  api.nvim_create_autocmd({ "BufEnter", "BufWinEnter", "CursorHold" }, {
    group = group,
    buffer = bufnr,
    desc = "cria: prefetch the prompt at the cursor",
    callback = function()
      send(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "BufUnload", "BufWipeout" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      M.detach(bufnr)
    end,
  })
  if api.nvim_get_current_buf() == bufnr then
    send(bufnr)
  end
end

--- Stops prefetching for a buffer.
function M.detach(bufnr)
  local st = buffers[bufnr]
  if not st then
    return
  end
  if st.timer then
    st.timer:stop()
    if not st.timer:is_closing() then
      st.timer:close()
    end
  end
  pcall(api.nvim_del_augroup_by_id, st.augroup)
  buffers[bufnr] = nil
end

--- After a `cria/status`: when the model has just become ready, prefetch
--- the current buffer (nothing was sent while it loaded).
---@param client_id integer
---@param before string|nil the state before this status
---@param status table
function M.on_status(client_id, before, status)
  if status.state ~= "ready" or before == "ready" or before == "warming" then
    return
  end
  local bufnr = api.nvim_get_current_buf()
  local client = client_mod.get(bufnr)
  if client and client.id == client_id then
    send(bufnr)
  end
end

return M
