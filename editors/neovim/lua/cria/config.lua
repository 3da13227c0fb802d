-- cria.nvim settings: defaults, merging and validation.
--
-- Settings come from `require("cria").setup(opts)` or, without a setup call,
-- from the global `vim.g.cria` table. Unknown keys are reported, never fatal.

local M = {}

---@class cria.Keymaps
---@field accept string|false        Accept the whole suggestion (falls back to the key's usual action).
---@field accept_word string|false   Accept the next word of the suggestion.
---@field accept_line string|false   Accept the rest of the suggestion's current line.
---@field dismiss string|false       Hide the suggestion.
---@field next string|false          Show the next suggestion (or ask for one).
---@field prev string|false          Show the previous suggestion.

---@class cria.Config
---@field enabled boolean            Show suggestions at start-up (`:Cria toggle` flips it).
---@field auto_start boolean         Start cria for `filetypes` (false: use `vim.lsp.enable("cria")` yourself).
---@field bin string                 The cria executable.
---@field cmd string[]|nil           Full command; overrides `bin` (default `{ bin, "lsp" }`).
---@field cmd_env table|nil          Extra environment for the server (e.g. `CRIA_HOME`).
---@field model string|nil           Model name (`cria models`) or path to a .gguf file; nil = server default.
---@field settings table             Other server settings (maxTokens, latencyBudgetMs, temperature, ...).
---@field filetypes string[]         Filetypes cria is started for.
---@field debounce_ms integer        Idle time after typing before a suggestion is requested.
---@field auto_trigger boolean       Request suggestions while typing (false: only on `next`).
---@field hide_during_completion boolean  No ghost text while the popup menu is visible.
---@field native "auto"|boolean      Use `vim.lsp.inline_completion` (Neovim 0.12+) instead of the built-in ghost text.
---@field inline boolean             Draw the first line inline (pushing text right) when text follows the cursor.
---@field keymaps cria.Keymaps
---@field status table               Statusline options.

---@type cria.Config
M.defaults = {
  enabled = true,
  auto_start = true,
  bin = "cria",
  cmd = nil,
  cmd_env = nil,
  model = nil,
  settings = {},
  filetypes = {
    "rust",
    "python",
    "javascript",
    "javascriptreact",
    "typescript",
    "typescriptreact",
    "go",
    "c",
    "cpp",
    "java",
  },
  debounce_ms = 75,
  auto_trigger = true,
  hide_during_completion = true,
  native = "auto",
  inline = true,
  keymaps = {
    accept = "<Tab>",
    accept_word = "<M-Right>",
    accept_line = "<M-Down>",
    dismiss = "<C-]>",
    next = "<M-]>",
    prev = "<M-[>",
  },
  status = {
    prefix = "cria",
  },
}

---@type cria.Config
M.options = vim.deepcopy(M.defaults)

local has_new_validate = vim.fn.has("nvim-0.11") == 1

--- `vim.validate` for one value, in the form the running Neovim prefers.
local function check(name, value, types, optional)
  if has_new_validate then
    vim.validate(name, value, types, optional)
  else
    vim.validate({ [name] = { value, types, optional } })
  end
end

local function keymap_value(v)
  return v == false or type(v) == "string"
end

local function string_list(v)
  if type(v) ~= "table" then
    return false
  end
  for _, item in ipairs(v) do
    if type(item) ~= "string" then
      return false
    end
  end
  return true
end

--- Validates a merged configuration; raises an error naming the bad key.
---@param c cria.Config
function M.validate(c)
  check("enabled", c.enabled, "boolean")
  check("auto_start", c.auto_start, "boolean")
  check("bin", c.bin, "string")
  check("cmd", c.cmd, string_list, true)
  check("cmd_env", c.cmd_env, "table", true)
  check("model", c.model, "string", true)
  check("settings", c.settings, "table")
  check("filetypes", c.filetypes, string_list)
  check("debounce_ms", c.debounce_ms, function(v)
    return type(v) == "number" and v >= 0 and v == math.floor(v)
  end)
  check("auto_trigger", c.auto_trigger, "boolean")
  check("hide_during_completion", c.hide_during_completion, "boolean")
  check("native", c.native, function(v)
    return v == "auto" or type(v) == "boolean"
  end)
  check("inline", c.inline, "boolean")
  check("keymaps", c.keymaps, "table")
  for _, key in ipairs({ "accept", "accept_word", "accept_line", "dismiss", "next", "prev" }) do
    check("keymaps." .. key, c.keymaps[key], keymap_value)
  end
  check("status", c.status, "table")
end

--- Merges user options over the defaults, validates, and stores them.
---@param opts table|nil
---@return cria.Config
function M.set(opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("cria: setup() expects a table, got " .. type(opts))
  end
  for key in pairs(opts) do
    if M.defaults[key] == nil and key ~= "cmd" and key ~= "cmd_env" and key ~= "model" then
      vim.notify(("cria: unknown option `%s` ignored"):format(key), vim.log.levels.WARN)
    end
  end
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  -- Lists replace, never merge element-wise.
  if opts.filetypes then
    merged.filetypes = vim.deepcopy(opts.filetypes)
  end
  if opts.cmd then
    merged.cmd = vim.deepcopy(opts.cmd)
  end
  M.validate(merged)
  M.options = merged
  return merged
end

--- The options from `vim.g.cria` (a table), for start-up without setup().
---@return table|nil
function M.from_global()
  local g = vim.g.cria
  if type(g) == "table" then
    return g
  end
  return nil
end

--- The command that starts the server.
---@param c cria.Config|nil
---@return string[]
function M.cmd(c)
  c = c or M.options
  if c.cmd then
    return vim.deepcopy(c.cmd)
  end
  local bin = c.bin
  if bin:sub(1, 1) == "~" then
    bin = vim.fn.expand(bin)
  end
  return { bin, "lsp" }
end

--- The settings sent to the server (initializationOptions and
--- workspace/didChangeConfiguration). Never empty as Lua sees it: an empty
--- table would be sent as a JSON array, which the server rejects.
---@param c cria.Config|nil
---@return table
function M.server_settings(c)
  c = c or M.options
  local s = vim.deepcopy(c.settings or {})
  if c.model then
    s.model = c.model
  end
  if next(s) == nil then
    return vim.empty_dict()
  end
  return s
end

return M
