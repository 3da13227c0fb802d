-- The cria server as a `vim.lsp.Config`, for Neovim 0.11+:
--
--   vim.lsp.enable("cria")
--
-- It follows cria.nvim's options (setup() or `vim.g.cria`); override fields
-- with `vim.lsp.config("cria", { ... })`. With `auto_start = false` in the
-- plugin's options this is how cria is started; suggestions are drawn for it
-- either way.

---@type vim.lsp.Config
return require("cria.client").lsp_config()
