-- Starting, finding, reconfiguring and restarting the cria language server.
--
-- One cria process serves every buffer (no root directory), so the model is
-- loaded once per Neovim session.

local config = require("cria.config")

local M = {}

M.name = "cria"

local augroup = vim.api.nvim_create_augroup("cria.client", { clear = true })

--- Calls a method on an LSP client with the `client:method()` form on 0.11+
--- and the `client.method()` form before.
local has_method_calls = vim.fn.has("nvim-0.11") == 1

function M.call(client, method, ...)
  if has_method_calls then
    return client[method](client, ...)
  end
  return client[method](...)
end

--- The `vim.lsp.ClientConfig` for cria from the current options. Also what
--- `lsp/cria.lua` returns, so `vim.lsp.enable("cria")` starts the same server.
---@param c cria.Config|nil
---@return table
function M.lsp_config(c)
  c = c or config.options
  local settings = config.server_settings(c)
  return {
    name = M.name,
    cmd = config.cmd(c),
    cmd_env = c.cmd_env,
    filetypes = vim.deepcopy(c.filetypes),
    init_options = settings,
    settings = { cria = settings },
    handlers = {
      ["cria/status"] = function(err, result, ctx)
        M.on_status(err, result, ctx)
      end,
    },
  }
end

--- Handler of `cria/status`: the statusline's state, then what waits for
--- the model to be ready (the prefetch after a load, the re-ask after
--- warming).
function M.on_status(err, result, ctx)
  local status = require("cria.status")
  local before = status.by_client[ctx.client_id]
  before = before and before.state
  status.on_status(err, result, ctx)
  if type(result) ~= "table" then
    return
  end
  vim.schedule(function()
    require("cria.prefetch").on_status(ctx.client_id, before, result)
    if not require("cria.native").active() then
      require("cria.ghost").on_status(result)
    end
  end)
end

--- Running cria clients, optionally only those attached to a buffer.
---@param bufnr integer|nil
---@return vim.lsp.Client[]
function M.clients(bufnr)
  local get = vim.lsp.get_clients or vim.lsp.get_active_clients
  return get({ name = M.name, bufnr = bufnr })
end

--- The cria client attached to a buffer, if any.
---@param bufnr integer|nil
---@return vim.lsp.Client|nil
function M.get(bufnr)
  return M.clients(bufnr or vim.api.nvim_get_current_buf())[1]
end

local function wanted(bufnr)
  if not vim.api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= "" then
    return false
  end
  if vim.b[bufnr].cria_disabled then
    return false
  end
  return vim.tbl_contains(config.options.filetypes, vim.bo[bufnr].filetype)
end

--- Starts cria (or reuses the running one) for a buffer of a wanted filetype.
---@param bufnr integer
---@return integer|nil client_id
function M.start(bufnr)
  if not wanted(bufnr) then
    return nil
  end
  return vim.lsp.start(M.lsp_config(), { bufnr = bufnr })
end

--- Starts cria for every loaded buffer of a wanted filetype.
function M.start_all()
  for _, bufnr in ipairs(vim.api.nvim_list_bufs()) do
    if vim.api.nvim_buf_is_loaded(bufnr) then
      M.start(bufnr)
    end
  end
end

--- Sets up the FileType autocommand that starts cria (when `auto_start`).
function M.setup()
  vim.api.nvim_clear_autocmds({ group = augroup })
  if not config.options.auto_start then
    return
  end
  vim.api.nvim_create_autocmd("FileType", {
    group = augroup,
    pattern = config.options.filetypes,
    desc = "Start the cria language server",
    callback = function(args)
      M.start(args.buf)
    end,
  })
  M.start_all()
end

--- Sends the current settings to running clients.
function M.push_settings()
  local settings = config.server_settings()
  for _, client in ipairs(M.clients()) do
    local changed = not vim.deep_equal(client.settings, { cria = settings })
    -- A client still initializing sends `client.settings` itself once ready.
    client.settings = { cria = settings }
    if changed and client.initialized then
      M.call(client, "notify", "workspace/didChangeConfiguration", { settings = { cria = settings } })
    end
  end
end

--- Stops every cria client and starts a fresh one for the buffers that had
--- one (or would get one). Calls `done(client_id)` once restarted.
---@param done fun(client_id: integer|nil)|nil
function M.restart(done)
  local buffers = {}
  local old = M.clients()
  for _, client in ipairs(old) do
    for bufnr in pairs(client.attached_buffers or {}) do
      buffers[bufnr] = true
    end
    M.call(client, "stop")
  end
  local waited = 0
  local timer = assert((vim.uv or vim.loop).new_timer())
  timer:start(
    50,
    50,
    vim.schedule_wrap(function()
      waited = waited + 50
      local stopped = true
      for _, client in ipairs(old) do
        local is_stopped = client.is_stopped and M.call(client, "is_stopped")
        if is_stopped == false then
          stopped = false
        end
      end
      if not stopped and waited < 3000 then
        return
      end
      if not stopped then
        for _, client in ipairs(old) do
          M.call(client, "stop", true)
        end
      end
      timer:stop()
      timer:close()
      require("cria.status").reset()
      local id
      for bufnr in pairs(buffers) do
        if vim.api.nvim_buf_is_valid(bufnr) then
          id = M.start(bufnr) or id
        end
      end
      if not id then
        M.start_all()
        local client = M.clients()[1]
        id = client and client.id
      end
      if done then
        done(id)
      end
    end)
  )
end

--- Tells the server a suggestion was accepted (`cria.accepted`).
---@param client vim.lsp.Client
---@param bufnr integer
---@param info table
function M.accepted(client, bufnr, info)
  local params = { command = "cria.accepted", arguments = { info } }
  M.call(client, "request", "workspace/executeCommand", params, function() end, bufnr)
end

return M
