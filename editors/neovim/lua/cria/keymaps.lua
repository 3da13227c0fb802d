-- Insert-mode keys: accept, accept word, accept line, dismiss, next, prev.
--
-- Each is an <expr> mapping that acts only when a suggestion is shown and
-- otherwise does what the key did before: its earlier mapping if there was
-- one (captured when cria maps it), or the key itself (so <Tab> still
-- inserts a tab or indent).

local api = vim.api

local M = {}

local DESC = "cria: "

--- Keys cria mapped, so setup() can unmap them again.
---@type string[]
local mapped = {}

--- Non-expr callbacks of captured mappings, run through <Cmd>.
local callbacks = {}

local function termcodes(keys)
  return api.nvim_replace_termcodes(keys, true, true, true)
end

--- What the key did before cria mapped it, as keys to return from an
--- <expr> mapping.
---@param lhs string
---@param previous table|nil maparg() dictionary
---@return fun(): string
local function fallback_for(lhs, previous)
  if not previous or vim.tbl_isempty(previous) or (previous.desc or ""):sub(1, #DESC) == DESC then
    return function()
      return termcodes(lhs)
    end
  end
  if previous.expr == 1 then
    return function()
      local keys
      if previous.callback then
        keys = previous.callback()
      else
        keys = vim.fn.eval(previous.rhs)
      end
      if type(keys) ~= "string" then
        return ""
      end
      return termcodes(keys)
    end
  end
  if previous.callback then
    table.insert(callbacks, previous.callback)
    local index = #callbacks
    return function()
      return termcodes(("<Cmd>lua require('cria.keymaps')._run(%d)<CR>"):format(index))
    end
  end
  local rhs = termcodes(previous.rhs or "")
  if previous.noremap == 1 then
    return function()
      return rhs
    end
  end
  -- A recursive mapping: its keys must be remapped, which an <expr>
  -- mapping's result is not; feed them instead.
  return function()
    api.nvim_feedkeys(rhs, "m", false)
    return ""
  end
end

function M._run(index)
  local callback = callbacks[index]
  if callback then
    callback()
  end
end

--- The engine in use: the built-in (0.12+) or cria's ghost text.
local function engine()
  if require("cria.native").active() then
    return require("cria.native")
  end
  return require("cria.ghost")
end

local function accept_action(kind)
  return function(fallback)
    if not require("cria").is_enabled() then
      return fallback()
    end
    local e = engine()
    if e == require("cria.ghost") then
      if not e.is_visible() then
        return fallback()
      end
      -- Text cannot change while an <expr> mapping is evaluated: do it in
      -- a <Cmd> right after.
      return termcodes(("<Cmd>lua require('cria.ghost').accept(%q)<CR>"):format(kind))
    end
    if e.accept(kind) then
      return ""
    end
    return fallback()
  end
end

local actions = {
  accept = accept_action("all"),
  accept_word = accept_action("word"),
  accept_line = accept_action("line"),
  dismiss = function(fallback)
    local e = engine()
    if e.is_visible() then
      if e == require("cria.ghost") then
        return termcodes("<Cmd>lua require('cria.ghost').dismiss()<CR>")
      end
      return termcodes("<Cmd>lua require('cria.native').dismiss()<CR>")
    end
    return fallback()
  end,
  next = function()
    return termcodes(("<Cmd>lua require('cria.keymaps').cycle(%d)<CR>"):format(1))
  end,
  prev = function()
    return termcodes(("<Cmd>lua require('cria.keymaps').cycle(%d)<CR>"):format(-1))
  end,
}

function M.cycle(step)
  if require("cria").is_enabled() then
    engine().cycle(step)
  end
end

--- `<Plug>` names, for users who map keys themselves.
M.plug = {
  accept = "<Plug>(cria-accept)",
  accept_word = "<Plug>(cria-accept-word)",
  accept_line = "<Plug>(cria-accept-line)",
  dismiss = "<Plug>(cria-dismiss)",
  next = "<Plug>(cria-next)",
  prev = "<Plug>(cria-prev)",
}

local descriptions = {
  accept = "accept the suggestion",
  accept_word = "accept the next word of the suggestion",
  accept_line = "accept the next line of the suggestion",
  dismiss = "dismiss the suggestion",
  next = "next suggestion",
  prev = "previous suggestion",
}

--- Defines the `<Plug>` mappings (their fallback is nothing).
function M.define_plugs()
  for name, plug in pairs(M.plug) do
    vim.keymap.set("i", plug, function()
      return actions[name](function()
        return ""
      end)
    end, { expr = true, silent = true, replace_keycodes = false, desc = DESC .. descriptions[name] })
  end
end

--- Maps the configured keys in insert mode, replacing cria's earlier maps.
---@param keymaps cria.Keymaps
function M.setup(keymaps)
  for _, lhs in ipairs(mapped) do
    pcall(vim.keymap.del, "i", lhs)
  end
  mapped = {}
  for name, lhs in pairs(keymaps) do
    if lhs and actions[name] then
      local previous = vim.fn.maparg(lhs, "i", false, true)
      local fallback = fallback_for(lhs, previous)
      vim.keymap.set("i", lhs, function()
        return actions[name](fallback)
      end, { expr = true, silent = true, replace_keycodes = false, desc = DESC .. descriptions[name] })
      table.insert(mapped, lhs)
    end
  end
end

return M
