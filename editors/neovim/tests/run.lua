-- Test runner: `nvim -l tests/run.lua [name-filter]` (see test.sh).
--
-- Each test drives its own child Neovim (`nvim --embed --headless -u
-- tests/minimal_init.lua`) over RPC: keys go in with nvim_input exactly as
-- typed, and state is read back with nvim_exec_lua, polling with timeouts
-- (the real server and model answer in their own time). Prints one line per
-- test and a closing `N passed, M failed`; exits non-zero on any failure.

local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local init = root .. "/tests/minimal_init.lua"

local H = {}

--- Children started by the current test, stopped after it.
local children = {}

local Child = {}
Child.__index = Child

--- Starts a child Neovim. `env` adds environment variables.
function H.child(env)
  local job_env = { CRIA_BIN = vim.env.CRIA_BIN }
  for k, v in pairs(env or {}) do
    job_env[k] = v
  end
  local cwd = vim.fn.tempname()
  vim.fn.mkdir(cwd, "p")
  local job = vim.fn.jobstart({ vim.v.progpath, "--embed", "--headless", "-n", "-i", "NONE", "-u", init }, {
    rpc = true,
    env = job_env,
    cwd = cwd,
  })
  assert(job > 0, "could not start nvim: " .. tostring(job))
  local child = setmetatable({ job = job }, Child)
  table.insert(children, child)
  -- Fails here if the init file raised an error.
  child:lua("return 1")
  return child
end

--- Runs Lua in the child: `code` is a chunk (use `...` for args).
function Child:lua(code, ...)
  return vim.rpcrequest(self.job, "nvim_exec_lua", code, { ... })
end

--- Runs `return <expr>` in the child.
function Child:get(expr, ...)
  return self:lua("return " .. expr, ...)
end

--- Types keys (`<Tab>`, `<Esc>`, ... notation) as a user would.
function Child:type(keys)
  vim.rpcrequest(self.job, "nvim_input", keys)
end

function Child:cmd(command)
  vim.rpcrequest(self.job, "nvim_command", command)
end

--- Polls `expr` in the child until it is truthy; returns its value.
function Child:wait(what, expr, timeout_ms, ...)
  local deadline = vim.uv.now() + (timeout_ms or 60000)
  local last
  while true do
    last = self:get(expr, ...)
    if last and last ~= vim.NIL then
      return last
    end
    if vim.uv.now() > deadline then
      local mode = vim.rpcrequest(self.job, "nvim_get_mode")
      error(
        ("timed out after %d ms waiting for %s (mode %s%s); messages: %s"):format(
          timeout_ms or 60000,
          what,
          mode.mode,
          mode.blocking and ", blocked" or "",
          vim.inspect(self:get("T.messages"))
        ),
        2
      )
    end
    vim.wait(20)
  end
end

--- Waits until the current buffer's cria client is ready.
function Child:wait_ready()
  self:wait("a cria client attached to the buffer", "T.client() ~= nil", 30000)
  local state = self:wait("the model to load", "(T.state() == 'ready' or T.state() == 'error') and T.state()", 90000)
  H.eq(state, "ready", "server state; messages: " .. vim.inspect(self:get("T.messages")))
end

--- Waits for ghost text and returns the suggestion shown.
function Child:wait_ghost()
  return self:wait("ghost text", "T.ghost_text()", 90000)
end

function Child:stop()
  if self.stopped then
    return
  end
  self.stopped = true
  pcall(vim.rpcnotify, self.job, "nvim_command", "qa!")
  if vim.fn.jobwait({ self.job }, 5000)[1] == -1 then
    vim.fn.jobstop(self.job)
    vim.fn.jobwait({ self.job }, 2000)
  end
end

function H.eq(actual, expected, what)
  if not vim.deep_equal(actual, expected) then
    error(("%s:\n  expected %s\n  actual   %s"):format(what or "values differ", vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

function H.ok(cond, what)
  if not cond then
    error(what or "assertion failed", 2)
  end
  return cond
end

-- Collect tests.
local tests = {}
function H.test(name, fn)
  table.insert(tests, { name = name, fn = fn })
end

if not vim.env.CRIA_BIN or vim.fn.executable(vim.env.CRIA_BIN) == 0 then
  io.stdout:write(("cria binary not found or not executable: %s\n"):format(tostring(vim.env.CRIA_BIN)))
  io.stdout:write("0 passed, 1 failed\n")
  os.exit(1)
end

local files = vim.fn.glob(root .. "/tests/test_*.lua", false, true)
table.sort(files)
for _, file in ipairs(files) do
  local chunk = assert(loadfile(file))
  chunk(H)
end

local filter = _G.arg and _G.arg[1]
local passed, failed = 0, 0
local failures = {}
local started = vim.uv.hrtime()
for _, t in ipairs(tests) do
  if not filter or t.name:find(filter, 1, true) then
    local t0 = vim.uv.hrtime()
    local ok, err = xpcall(t.fn, debug.traceback)
    for _, child in ipairs(children) do
      child:stop()
    end
    children = {}
    local ms = (vim.uv.hrtime() - t0) / 1e6
    if ok then
      passed = passed + 1
      io.stdout:write(("ok      %-62s %6.1fs\n"):format(t.name, ms / 1000))
    else
      failed = failed + 1
      table.insert(failures, t.name)
      io.stdout:write(("FAILED  %-62s %6.1fs\n%s\n"):format(t.name, ms / 1000, err))
    end
    io.stdout:flush()
  end
end
io.stdout:write(("\ntotal %.1fs\n"):format((vim.uv.hrtime() - started) / 1e9))
if #failures > 0 then
  io.stdout:write("failed: " .. table.concat(failures, ", ") .. "\n")
end
io.stdout:write(("%d passed, %d failed\n"):format(passed, failed))
io.stdout:flush()
os.exit((failed == 0 and passed > 0) and 0 or 1)
