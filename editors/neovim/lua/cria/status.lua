-- cria's state for statuslines: from the server's `cria/status`
-- notifications and its `$/progress` reports while the model loads.
--
-- Use `require("cria.status").statusline()` in 'statusline' or a statusline
-- plugin; it is cheap (no requests) and returns "" where cria is not running.

local M = {}

---@class cria.Status
---@field model string|nil
---@field state "loading"|"ready"|"warming"|"error"|nil  `warming`: ready, and computing a document's prompt in the background
---@field warming {uri: string, percentage: number}|nil  While `state` is `warming`.
---@field message string|nil
---@field lastLatencyMs integer|nil
---@field promptTokens integer|nil
---@field reusedTokens integer|nil
---@field tokensPerSecond number|nil
---@field kvCacheMb number|nil        Memory the KV caches of recently used documents take (what the system backs for them).
---@field kvSlotsMb number[]|nil      The same per KV-cache slot.
---@field kvSlots integer|nil         KV-cache slots in use.
---@field percentage integer|nil      Model loading progress.

--- Latest status per client id.
---@type table<integer, cria.Status>
M.by_client = {}

local function changed(client_id)
  vim.schedule(function()
    pcall(vim.api.nvim_exec_autocmds, "User", {
      pattern = "CriaStatus",
      modeline = false,
      data = { client_id = client_id, status = M.by_client[client_id] },
    })
    pcall(vim.cmd.redrawstatus)
  end)
end

--- Handler for the `cria/status` notification.
function M.on_status(_, result, ctx)
  if type(result) ~= "table" then
    return
  end
  local status = vim.deepcopy(result)
  local previous = M.by_client[ctx.client_id]
  if status.state == "loading" and previous then
    status.percentage = previous.percentage
  end
  M.by_client[ctx.client_id] = status
  changed(ctx.client_id)
end

--- Records `$/progress` percentages (LspProgress autocommand).
function M.on_progress(args)
  local data = args.data or {}
  local client = vim.lsp.get_client_by_id(data.client_id or -1)
  if not client or client.name ~= "cria" then
    return
  end
  local value = data.params and data.params.value or {}
  local status = M.by_client[client.id] or { state = "loading" }
  if value.kind == "begin" or value.kind == "report" then
    status.percentage = value.percentage or status.percentage
    status.state = status.state or "loading"
  elseif value.kind == "end" then
    status.percentage = nil
  end
  M.by_client[client.id] = status
  changed(client.id)
end

--- Forgets every status (after a restart).
function M.reset()
  M.by_client = {}
end

--- The status of the cria client attached to a buffer.
---@param bufnr integer|nil
---@return cria.Status|nil status, vim.lsp.Client|nil client
function M.get(bufnr)
  local client = require("cria.client").get(bufnr)
  if not client then
    return nil, nil
  end
  return M.by_client[client.id] or { state = "loading" }, client
end

--- A short text for a statusline: `cria: ready 120ms`, `cria: loading 40%`,
--- `cria: warming 40%`, `cria: error`, `cria: off`, or "" where cria is not
--- attached.
---@param bufnr integer|nil
---@return string
function M.statusline(bufnr)
  local status = M.get(bufnr)
  if not status then
    return ""
  end
  local options = require("cria.config").options
  local prefix = (options.status and options.status.prefix) or "cria"
  if not require("cria").is_enabled() then
    return prefix .. ": off"
  end
  if status.state == "ready" then
    if status.lastLatencyMs then
      return ("%s: ready %dms"):format(prefix, status.lastLatencyMs)
    end
    return prefix .. ": ready"
  elseif status.state == "error" then
    return prefix .. ": error"
  elseif status.state == "warming" then
    local percentage = type(status.warming) == "table" and tonumber(status.warming.percentage)
    if percentage then
      return ("%s: warming %d%%"):format(prefix, math.floor(math.max(0, math.min(100, percentage)) + 0.5))
    end
    return prefix .. ": warming"
  end
  if status.percentage then
    return ("%s: loading %d%%"):format(prefix, status.percentage)
  end
  return prefix .. ": loading"
end

--- `main.py 40%` for a status's `warming` field.
---@param warming {uri: string, percentage: number}
---@return string
function M.warming_text(warming)
  local ok, fname = pcall(vim.uri_to_fname, warming.uri)
  local name = ok and type(fname) == "string" and vim.fn.fnamemodify(fname, ":t") or "?"
  local percentage = tonumber(warming.percentage)
  return percentage and ("%s %d%%"):format(name, math.floor(percentage + 0.5)) or name
end

--- `2 slots, 130 MB` when the server reports its KV caches, else nil.
---@param s cria.Status
---@return string|nil
function M.cache_text(s)
  local parts = {}
  if tonumber(s.kvSlots) then
    table.insert(parts, ("%d %s"):format(s.kvSlots, s.kvSlots == 1 and "slot" or "slots"))
  end
  if tonumber(s.kvCacheMb) then
    table.insert(parts, ("%d MB"):format(math.floor(s.kvCacheMb + 0.5)))
  end
  return #parts > 0 and table.concat(parts, ", ") or nil
end

--- A multi-line description for `:Cria status`.
---@return string
function M.describe()
  local clients = require("cria.client").clients()
  if #clients == 0 then
    return "cria: not running (no buffer of a configured filetype is open)"
  end
  local lines = {}
  for _, client in ipairs(clients) do
    local s = M.by_client[client.id] or {}
    local buffers = vim.tbl_keys(client.attached_buffers or {})
    table.sort(buffers)
    table.insert(
      lines,
      ("cria (client %d, %s): %s%s"):format(
        client.id,
        s.model and s.model ~= "" and s.model or "model ?",
        s.state or "starting",
        require("cria").is_enabled() and "" or ", suggestions off"
      )
    )
    if s.message then
      table.insert(lines, "  " .. s.message)
    end
    if s.percentage then
      table.insert(lines, ("  loading: %d%%"):format(s.percentage))
    end
    if s.state == "warming" and type(s.warming) == "table" then
      table.insert(lines, "  warming: " .. M.warming_text(s.warming))
    end
    local cache = M.cache_text(s)
    if cache then
      table.insert(lines, "  KV cache: " .. cache)
    end
    if s.lastLatencyMs then
      table.insert(
        lines,
        ("  last completion: %d ms, %s prompt tokens (%s reused), %s tokens/s"):format(
          s.lastLatencyMs,
          tostring(s.promptTokens or "?"),
          tostring(s.reusedTokens or "?"),
          s.tokensPerSecond and ("%.1f"):format(s.tokensPerSecond) or "?"
        )
      )
    end
    table.insert(lines, "  buffers: " .. table.concat(buffers, ", "))
  end
  return table.concat(lines, "\n")
end

return M
