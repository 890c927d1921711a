-- Drive `pygent lsp --stdio` from Neovim 0.7 headless (the same calls as docs/editors.md).
-- Environment: PYGENT_LSP_CMD (a JSON list), PYGENT_TEST_ROOT (the project folder),
-- PYGENT_TEST_OUT (where the JSON result goes).
local cmd = vim.fn.json_decode(os.getenv("PYGENT_LSP_CMD"))
local root = os.getenv("PYGENT_TEST_ROOT")
local out = { asked = {}, updates = {}, errors = {} }

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
    -- Pygent asks before a tool call runs: answer "allow once".
    ["pygent/requestPermission"] = function(_, params, _)
      table.insert(out.asked, params)
      return { optionId = "allow_once" }
    end,
    -- Streamed events of the session (text deltas, tool output, turn end...).
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

local function command(name, arg, timeout)
  local response, err = client.request_sync("workspace/executeCommand",
    { command = name, arguments = { arg } }, timeout or 60000)
  if err or response == nil or response.err then
    table.insert(out.errors, { command = name, error = err or (response and response.err) or "no response" })
    return nil
  end
  return response.result
end

local session = command("pygent.session.new", { workspaceFolder = root, runtime = "local" })
if session then
  out.session = session
  out.prompt = command("pygent.session.prompt",
    { sessionId = session.sessionId, prompt = "Greet the world in src/app.py" })
  out.changes = command("pygent.workspace.changes", { sessionId = session.sessionId })
  out.applied = command("pygent.workspace.apply", { sessionId = session.sessionId })
  -- The edit landed in a buffer (not saved): read it back.
  local bufnr = vim.fn.bufnr(root .. "/src/app.py")
  if bufnr ~= -1 then
    out.buffer = table.concat(vim.api.nvim_buf_get_lines(bufnr, 0, -1, false), "\n")
  end
  out.list = command("pygent.session.list", {})
end
finish()
