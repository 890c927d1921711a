-- Neovim 0.7 headless as an editor user: the agent runs ruff in the sandbox, the problems
-- show in Neovim's diagnostic list, the code action "Ask Pygent to fix" is picked from
-- Neovim's own code-action menu (vim.lsp.buf.code_action), and the problems clear after
-- the fix. Environment: PYGENT_LSP_CMD (JSON list), PYGENT_TEST_ROOT, PYGENT_TEST_OUT.
local cmd = vim.fn.json_decode(os.getenv("PYGENT_LSP_CMD"))
local root = os.getenv("PYGENT_TEST_ROOT")
local out = { updates = {}, errors = {}, offered = {} }

local function finish()
  local fh = io.open(os.getenv("PYGENT_TEST_OUT"), "w")
  fh:write(vim.fn.json_encode(out))
  fh:close()
  vim.cmd("qa!")
end

local client_id = vim.lsp.start_client({
  name = "pygent",
  cmd = cmd,
  root_dir = root,
  handlers = {
    ["pygent/sessionUpdate"] = function(_, params, _)
      table.insert(out.updates, params.update.type)
    end,
  },
})
local client = vim.lsp.get_client_by_id(client_id)
if not vim.wait(15000, function() return client.initialized end, 50) then
  table.insert(out.errors, "the server did not initialise")
  return finish()
end

vim.cmd("edit " .. root .. "/greet.py")
local bufnr = vim.api.nvim_get_current_buf()
vim.lsp.buf_attach_client(bufnr, client_id)

local function command(name, arg)
  local response, err = client.request_sync("workspace/executeCommand",
    { command = name, arguments = { arg } }, 60000)
  if err or response == nil or response.err then
    table.insert(out.errors, { command = name, error = err or (response and response.err) or "no response" })
    return nil
  end
  return response.result
end

local function shown()
  local items = {}
  for _, d in ipairs(vim.diagnostic.get(bufnr)) do
    table.insert(items, { lnum = d.lnum, col = d.col, source = d.source, message = d.message })
  end
  return items
end

local session = command("pygent.session.new",
  { workspaceFolder = root, runtime = "local", approvalMode = "never" })
if not session then return finish() end
out.prompt = command("pygent.session.prompt", { sessionId = session.sessionId, prompt = "lint greet.py" })
vim.wait(15000, function() return #vim.diagnostic.get(bufnr) >= 2 end, 50)
out.before = shown()

-- The user puts the cursor on the unused variable's line and asks for code actions;
-- Neovim's menu (vim.ui.select) is answered with "Ask Pygent to fix".
vim.api.nvim_win_set_cursor(0, { 5, 4 })
local picked = false
vim.ui.select = function(items, opts, on_choice)
  for i, item in ipairs(items) do
    local action = item.action or item[2] or item
    table.insert(out.offered, action.title)
    if action.title == "Ask Pygent to fix" and not picked then
      picked = true
      on_choice(item, i)
    end
  end
  if not picked then on_choice(nil, nil) end
end
vim.lsp.buf.code_action()
if not vim.wait(15000, function() return picked end, 50) then
  table.insert(out.errors, "no code action menu")
end
-- The action's turn fixes the file and runs ruff again: the problems go away.
vim.wait(30000, function()
  local ended = 0
  for _, u in ipairs(out.updates) do if u == "turn_ended" then ended = ended + 1 end end
  return ended >= 2 and #vim.diagnostic.get(bufnr) == 0
end, 50)
out.after = shown()
finish()
