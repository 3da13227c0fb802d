-- :checkhealth cria

local M = {}

--- The model the server loads when none is configured.
M.default_model = "qwen2.5-coder-0.5b-instruct"

local function run(cmd, env)
  local ok, obj = pcall(function()
    return vim.system(cmd, { text = true, env = env }):wait(10000)
  end)
  if not ok then
    return nil, tostring(obj)
  end
  if obj.code ~= 0 then
    return nil, vim.trim((obj.stderr or "") ~= "" and obj.stderr or ("exit code " .. tostring(obj.code)))
  end
  return obj.stdout or "", nil
end

--- Finds a model in `cria models` output. Returns the status text after the
--- name (its architecture and path, or "not downloaded ...").
function M.find_model(listing, name)
  for line in vim.gsplit(listing, "\n", { plain = true }) do
    local first, rest = line:match("^(%S+)%s+(.*)$")
    if first == name then
      return rest
    end
  end
  return nil
end

function M.check()
  local health = vim.health
  local config = require("cria.config")
  local c = config.options

  health.start("cria: Neovim")
  local v = vim.version()
  local version = ("%d.%d.%d"):format(v.major, v.minor, v.patch)
  if vim.fn.has("nvim-0.10") == 0 then
    health.error("Neovim " .. version .. " is too old: cria.nvim needs 0.10 or newer")
  elseif require("cria.native").active() then
    health.ok("Neovim " .. version .. ": suggestions through vim.lsp.inline_completion")
  else
    health.ok("Neovim " .. version .. ": suggestions drawn by cria.nvim (ghost text)")
  end
  local ok, err = pcall(config.validate, c)
  if ok then
    health.ok("options are valid")
  else
    health.error("invalid options: " .. tostring(err))
  end

  health.start("cria: server")
  local cmd = config.cmd(c)
  local exe = vim.fn.exepath(cmd[1])
  if exe == "" then
    health.error(("`%s` not found"):format(cmd[1]), {
      "Install cria (`cargo install --path server` in the cria repository) and put it on $PATH,",
      "or set the full path: require('cria').setup({ bin = '/path/to/cria' })",
    })
    return
  end
  health.ok("binary: " .. exe)
  local out, verr = run({ exe, "--version" }, c.cmd_env)
  if out then
    health.ok("version: " .. vim.trim(out))
  else
    health.error("`" .. exe .. " --version` failed: " .. tostring(verr))
    return
  end

  local model = config.server_settings(c).model or M.default_model
  if model:find("/", 1, true) or model:match("%.gguf$") then
    local path = vim.fn.expand(model)
    if vim.fn.filereadable(path) == 1 then
      health.ok("model file: " .. path)
    else
      health.error("model file not found: " .. path)
    end
  else
    local listing, lerr = run({ exe, "models" }, c.cmd_env)
    if not listing then
      health.error("`cria models` failed: " .. tostring(lerr))
    else
      local found = M.find_model(listing, model)
      if not found then
        health.error(("unknown model `%s`"):format(model), { "`cria models` lists the models cria knows" })
      elseif found:find("not downloaded", 1, true) then
        health.error(("model `%s` is not downloaded"):format(model), { ("Run `cria pull %s`"):format(model) })
      else
        health.ok(("model `%s`: %s"):format(model, vim.trim((found:gsub("%s+", " ")))))
      end
    end
  end

  health.start("cria: clients")
  local clients = require("cria.client").clients()
  if #clients == 0 then
    health.info("not running (it starts for: " .. table.concat(c.filetypes, ", ") .. ")")
  end
  for _, client in ipairs(clients) do
    local status = require("cria.status")
    local s = status.by_client[client.id] or {}
    local text = ("client %d: %s%s"):format(client.id, s.state or "starting", s.model and (" (" .. s.model .. ")") or "")
    if s.state == "warming" and type(s.warming) == "table" then
      text = text .. ", warming " .. status.warming_text(s.warming)
    end
    local cache = status.cache_text(s)
    if cache then
      text = text .. ", KV cache: " .. cache
    end
    if s.state == "error" then
      health.error(text .. ": " .. tostring(s.message))
    else
      health.ok(text)
    end
  end
end

return M
