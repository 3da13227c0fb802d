-- Neovim 0.12+: suggestions through the built-in `vim.lsp.inline_completion`
-- (it requests, debounces and draws); cria adds partial accepts and the
-- `cria.accepted` report.

local api = vim.api

local M = {}

--- Whether the running Neovim has the built-in inline completion.
function M.available()
  local ic = vim.lsp.inline_completion
  return vim.fn.has("nvim-0.12") == 1
    and type(ic) == "table"
    and type(ic.enable) == "function"
    and type(ic.get) == "function"
end

--- Whether cria uses it (the `native` option, "auto" = when available).
function M.active()
  local native = require("cria.config").options.native
  if native == "auto" then
    return M.available()
  end
  return native == true and M.available()
end

--- Turns inline completion on or off in a buffer.
function M.enable(bufnr, on)
  pcall(vim.lsp.inline_completion.enable, on ~= false, { bufnr = bufnr })
end

--- Inserts an accepted item, whole or in part, and reports it.
---@param item table vim.lsp.inline_completion.Item
---@param kind "all"|"word"|"line"
local function apply(item, kind)
  local ghost = require("cria.ghost")
  local client = vim.lsp.get_client_by_id(item.client_id)
  local bufnr = api.nvim_get_current_buf()
  local text = item.insert_text
  if type(text) == "table" then
    -- A snippet: hand it to the snippet engine whole.
    vim.snippet.expand(text.value)
    return
  end
  local pos = api.nvim_win_get_cursor(0)
  local row, col = pos[1] - 1, pos[2]
  local replace = 0
  local range = item.range
  if range then
    local start, finish = range.start, range.end_ or range["end"]
    if start.row == row and start.col <= col then
      local typed = api.nvim_buf_get_text(bufnr, row, start.col, row, col, {})[1] or ""
      if text:sub(1, #typed) == typed then
        text = text:sub(#typed + 1)
      end
    end
    if finish and finish.row == row and finish.col > col then
      replace = finish.col - col
    end
  end
  local part = kind == "word" and ghost.next_word(text) or kind == "line" and ghost.next_line(text) or text
  if part == "" then
    part = text
  end
  ghost.insert(bufnr, row, col, replace, text, part)
  if client then
    require("cria.client").accepted(client, bufnr, {
      uri = vim.uri_from_bufnr(bufnr),
      kind = kind,
      text = part,
      complete = #part == #text,
    })
  end
end

--- Accepts the shown item (whole, word or line). Returns false when none
--- is shown. Safe in an `<expr>` mapping: the insertion is scheduled.
---@param kind "all"|"word"|"line"
---@return boolean
function M.accept(kind)
  local ok, accepted = pcall(vim.lsp.inline_completion.get, {
    on_accept = function(item)
      apply(item, kind or "all")
    end,
  })
  return ok and accepted == true
end

--- Whether the built-in draws a suggestion in the buffer.
function M.is_visible(bufnr)
  local ns = api.nvim_get_namespaces()["nvim.lsp.inline_completion"]
  if not ns then
    return false
  end
  return #api.nvim_buf_get_extmarks(bufnr or 0, ns, 0, -1, { limit = 1 }) > 0
end

--- Hides the shown item (the built-in has no call for it: turning it off
--- and on again in the buffer drops the item). False when none was shown.
function M.dismiss()
  local bufnr = api.nvim_get_current_buf()
  if not M.is_visible(bufnr) then
    return false
  end
  M.enable(bufnr, false)
  M.enable(bufnr, true)
  return true
end

--- Shows the next/previous item, or asks for one when none is shown.
function M.cycle(step)
  local ic = vim.lsp.inline_completion
  if type(ic.select) == "function" then
    pcall(ic.select, { count = step })
  end
end

return M
