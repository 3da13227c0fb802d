-- cria.nvim: code suggestions from the cria language server.
--
--   require("cria").setup({ model = "qwen2.5-coder-0.5b-instruct" })
--
-- setup() is optional: without it the plugin starts with the defaults, or
-- with the options in `vim.g.cria` (set `vim.g.cria = false` to keep it off
-- until setup() is called). Calling setup() again applies new options.

local M = {}

local did_setup = false
local enabled = true

local augroup = vim.api.nvim_create_augroup("cria", { clear = true })

--- Whether suggestions are shown (`:Cria toggle` flips it).
function M.is_enabled()
  return enabled
end

local function attach(bufnr, client)
  if client.name ~= require("cria.client").name then
    return
  end
  local native = require("cria.native")
  if native.active() then
    native.enable(bufnr, enabled)
  else
    require("cria.ghost").attach(bufnr)
  end
  require("cria.prefetch").attach(bufnr)
end

--- Applies options and starts cria for the configured filetypes.
---@param opts table|nil see `:help cria-config`
function M.setup(opts)
  local config = require("cria.config")
  local c = config.set(opts or config.from_global())
  did_setup = true
  enabled = c.enabled

  local ghost = require("cria.ghost")
  ghost.highlights()
  require("cria.keymaps").setup(c.keymaps)

  vim.api.nvim_clear_autocmds({ group = augroup })
  vim.api.nvim_create_autocmd("LspAttach", {
    group = augroup,
    desc = "cria: suggestions in buffers cria attaches to",
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client then
        attach(args.buf, client)
      end
    end,
  })
  vim.api.nvim_create_autocmd("LspDetach", {
    group = augroup,
    desc = "cria: stop suggestions when cria detaches",
    callback = function(args)
      local client = vim.lsp.get_client_by_id(args.data.client_id)
      if client and client.name == require("cria.client").name then
        ghost.detach(args.buf)
        require("cria.prefetch").detach(args.buf)
      end
    end,
  })
  vim.api.nvim_create_autocmd("LspProgress", {
    group = augroup,
    desc = "cria: model loading progress for the statusline",
    callback = function(args)
      require("cria.status").on_progress(args)
    end,
  })
  vim.api.nvim_create_autocmd("ColorScheme", {
    group = augroup,
    desc = "cria: suggestion highlight",
    callback = ghost.highlights,
  })

  local client = require("cria.client")
  client.setup()
  client.push_settings()
  -- Buffers already attached (setup() called again).
  for _, cl in ipairs(client.clients()) do
    for bufnr in pairs(cl.attached_buffers or {}) do
      attach(bufnr, cl)
    end
  end
end

--- Sets up with `vim.g.cria` unless setup() ran (called by plugin/cria.lua).
function M._auto()
  if did_setup or vim.g.cria == false then
    return
  end
  M.setup(nil)
end

--- Shows or hides suggestions everywhere.
---@param on boolean|nil nil flips
function M.toggle(on)
  if on == nil then
    on = not enabled
  end
  enabled = on
  local native = require("cria.native")
  local client = require("cria.client")
  if native.active() then
    for _, cl in ipairs(client.clients()) do
      for bufnr in pairs(cl.attached_buffers or {}) do
        native.enable(bufnr, enabled)
      end
    end
  else
    local ghost = require("cria.ghost")
    if not enabled then
      ghost.clear_all()
    else
      local bufnr = vim.api.nvim_get_current_buf()
      if ghost.attached(bufnr) then
        ghost.schedule(bufnr)
      end
    end
  end
  pcall(vim.cmd.redrawstatus)
  return enabled
end

--- Restarts the server (e.g. after installing a new cria or model).
function M.restart()
  require("cria.client").restart(function(id)
    if id then
      vim.notify(("cria: restarted (client %d)"):format(id), vim.log.levels.INFO)
    else
      vim.notify("cria: stopped; no buffer of a configured filetype to start it for", vim.log.levels.INFO)
    end
  end)
end

--- Prints the server's state.
function M.status()
  vim.notify(require("cria.status").describe(), vim.log.levels.INFO)
end

--- Statusline text (see `require("cria.status").statusline`).
function M.statusline(bufnr)
  return require("cria.status").statusline(bufnr)
end

return M
