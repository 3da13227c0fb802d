-- Init file of the Neovim instances the tests drive (`nvim --embed
-- --headless -u tests/minimal_init.lua`): cria.nvim from this checkout, the
-- real cria binary ($CRIA_BIN), the fast SmolLM2 model, and helpers the
-- tests call over RPC as `_G.T.*`.
--
-- $CRIA_TEST_MODE picks how the plugin is configured:
--   setup  (default) require("cria").setup(opts)
--   global           vim.g.cria = opts, no setup() call
--   enable           vim.g.cria = opts with auto_start = false; the test
--                    starts the server with vim.lsp.enable("cria")
--   defaults         setup() with the default options, only the command
--                    naming the model (so no settings are sent)

local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
vim.opt.runtimepath:prepend(root)
vim.opt.packpath = ""
vim.o.swapfile = false
vim.o.more = false
vim.o.shadafile = "NONE"

-- Messages are recorded instead of echoed: no hit-enter prompts.
_G.T = { messages = {} }
vim.notify = function(msg, level)
  table.insert(T.messages, { msg = tostring(msg), level = level })
end

local bin = vim.env.CRIA_BIN
if not bin or bin == "" then
  error("CRIA_BIN is not set")
end

-- Every notification the plugin sends (all go through client.call), from
-- the start.
T.notifications = {}
do
  local client_mod = require("cria.client")
  local call = client_mod.call
  client_mod.call = function(client, method, ...)
    if method == "notify" then
      local name, params = ...
      table.insert(T.notifications, { method = name, params = vim.deepcopy(params), at = vim.uv.now() })
    end
    return call(client, method, ...)
  end
end

T.opts = {
  bin = bin,
  model = "smollm2-135m-instruct",
  -- CI machines are slow: a generous budget; short suggestions.
  settings = { latencyBudgetMs = 30000, maxTokens = 32 },
  debounce_ms = 75,
}

local mode = vim.env.CRIA_TEST_MODE or "setup"
if mode == "setup" then
  require("cria").setup(T.opts)
elseif mode == "global" then
  vim.g.cria = T.opts
elseif mode == "enable" then
  T.opts.auto_start = false
  vim.g.cria = T.opts
elseif mode == "defaults" then
  require("cria").setup({ cmd = { bin, "lsp", "--model", "smollm2-135m-instruct" } })
else
  error("unknown CRIA_TEST_MODE " .. mode)
end

local api = vim.api

--- The cria client of the current buffer.
function T.client()
  return require("cria.client").get(0)
end

--- State of the current buffer's client: nil, "loading", "ready", "error".
function T.state()
  local status = require("cria.status").get(0)
  return status and status.state
end

--- The text Neovim sends the server for a buffer (as in didOpen).
function T.buffer_text(bufnr)
  bufnr = bufnr or 0
  if vim.lsp._buf_get_full_text then
    return vim.lsp._buf_get_full_text(bufnr)
  end
  local text = table.concat(api.nvim_buf_get_lines(bufnr, 0, -1, true), "\n")
  if vim.bo[bufnr].eol then
    text = text .. "\n"
  end
  return text
end

--- The server's copy of the current buffer (`cria/documentText`).
function T.document_text()
  local client = assert(T.client(), "no cria client")
  local response, err = client:request_sync(
    "cria/documentText",
    { uri = vim.uri_from_bufnr(0) },
    10000,
    -- The real buffer number: pending changes are flushed for it first.
    vim.api.nvim_get_current_buf()
  )
  assert(response, "cria/documentText: " .. tostring(err))
  assert(not response.err, vim.inspect(response.err))
  return response.result
end

--- The ghost text extmarks in the current buffer, with details.
function T.ghost_marks()
  return api.nvim_buf_get_extmarks(0, require("cria.ghost").ns, 0, -1, { details = true })
end

--- The suggestion shown: its remaining text, or nil.
function T.ghost_text()
  local shown = require("cria.ghost").current(0)
  if shown and #T.ghost_marks() > 0 then
    return shown.text
  end
  return nil
end

function T.lines()
  return api.nvim_buf_get_lines(0, 0, -1, true)
end

function T.line()
  return api.nvim_get_current_line()
end

function T.cursor()
  return api.nvim_win_get_cursor(0)
end

function T.mode()
  return api.nvim_get_mode().mode
end

--- The `cria/prefetch` notifications sent so far: `file line:character`.
function T.prefetches()
  local out = {}
  for _, n in ipairs(T.notifications) do
    if n.method == "cria/prefetch" then
      local p = n.params
      table.insert(out, ("%s %d:%d"):format(vim.fs.basename(p.textDocument.uri), p.position.line, p.position.character))
    end
  end
  return out
end

--- Feeds a `cria/status` to the plugin as if the server had sent it.
function T.status(result)
  local client = assert(T.client(), "no cria client")
  require("cria.client").on_status(nil, result, { client_id = client.id, method = "cria/status" })
end

--- Records the requests and cancellations the cria client sends. While
--- `T.empty_answers` is set, inline completions are answered with no items
--- here, without asking the server.
function T.spy()
  local client = assert(T.client(), "no cria client")
  T.requests = {}
  T.cancels = {}
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    local record = { method = method, params = params }
    table.insert(T.requests, record)
    if method == "textDocument/inlineCompletion" and T.empty_answers then
      record.id = -#T.requests
      vim.schedule(function()
        record.result = { items = {} }
        record.done = true
        handler(nil, record.result, { method = method, client_id = self.id, bufnr = bufnr })
      end)
      return true, record.id
    end
    local ok, id = request(self, method, params, function(err, result, ctx)
      record.err = err
      record.result = result
      record.done = true
      if handler then
        return handler(err, result, ctx)
      end
    end, bufnr)
    record.id = id
    return ok, id
  end
  local cancel = client.cancel_request
  client.cancel_request = function(self, id)
    table.insert(T.cancels, id)
    if id < 0 then
      return true -- answered here, never sent
    end
    return cancel(self, id)
  end
end

--- Requests of one method recorded by T.spy().
function T.sent(method)
  return vim.tbl_filter(function(r)
    return r.method == method
  end, T.requests or {})
end

--- The in-flight inline completion request id, if any.
function T.pending_id()
  for i = #(T.requests or {}), 1, -1 do
    local r = T.requests[i]
    if r.method == "textDocument/inlineCompletion" and not r.done then
      return r.id
    end
  end
  return nil
end

--- Opens a file with the given lines in a fresh temporary directory.
function T.edit(name, lines)
  local dir = vim.fn.tempname()
  vim.fn.mkdir(dir, "p")
  local path = dir .. "/" .. name
  vim.fn.writefile(lines, path)
  vim.cmd.edit(vim.fn.fnameescape(path))
  return path
end
