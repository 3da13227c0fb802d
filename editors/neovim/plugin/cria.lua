-- cria.nvim entry point: commands and <Plug> maps; the rest loads lazily.

if vim.g.loaded_cria then
  return
end
vim.g.loaded_cria = true

if vim.fn.has("nvim-0.10") == 0 then
  vim.notify("cria.nvim needs Neovim 0.10 or newer", vim.log.levels.WARN)
  return
end

local subcommands = {
  status = function()
    require("cria").status()
  end,
  toggle = function()
    local on = require("cria").toggle()
    vim.notify("cria: suggestions " .. (on and "on" or "off"), vim.log.levels.INFO)
  end,
  enable = function()
    require("cria").toggle(true)
  end,
  disable = function()
    require("cria").toggle(false)
  end,
  restart = function()
    require("cria").restart()
  end,
}

vim.api.nvim_create_user_command("Cria", function(opts)
  local name = opts.fargs[1] or "status"
  local run = subcommands[name]
  if not run then
    vim.notify(("cria: unknown subcommand `%s` (status, toggle, enable, disable, restart)"):format(name), vim.log.levels.ERROR)
    return
  end
  run()
end, {
  nargs = "?",
  desc = "cria: status | toggle | enable | disable | restart",
  complete = function(lead)
    local names = vim.tbl_keys(subcommands)
    table.sort(names)
    return vim.tbl_filter(function(n)
      return vim.startswith(n, lead)
    end, names)
  end,
})

vim.api.nvim_create_user_command("CriaStatus", subcommands.status, { desc = "cria: server state" })
vim.api.nvim_create_user_command("CriaToggle", subcommands.toggle, { desc = "cria: show or hide suggestions" })

require("cria.keymaps").define_plugs()

-- Start with the defaults (or `vim.g.cria`) unless setup() is called first;
-- lazy.nvim calls setup() right after sourcing this file, before this runs.
vim.schedule(function()
  require("cria")._auto()
end)
