-- Configure `pygent lsp --stdio` from Neovim 0.7 headless through standard LSP config
-- (the snippet of docs/editors.md, "Configuring Pygent"): `settings`, sent with
-- workspace/didChangeConfiguration from on_init and on every change (Neovim 0.7 answers
-- workspace/configuration but does not announce it, so the server does not ask), and
-- `init_options` (initializationOptions).
-- Environment: PYGENT_LSP_CMD (a JSON list), PYGENT_TEST_ROOT (the project folder),
-- PYGENT_TEST_OUT (where the JSON result goes).
local cmd = vim.fn.json_decode(os.getenv("PYGENT_LSP_CMD"))
local root = os.getenv("PYGENT_TEST_ROOT")
local out = { errors = {} }

local function finish()
  local fh = io.open(os.getenv("PYGENT_TEST_OUT"), "w")
  fh:write(vim.fn.json_encode(out))
  fh:close()
  vim.cmd("qa!")
end

local function start(config)
  local client_id = vim.lsp.start_client(vim.tbl_extend("force", {
    name = "pygent",
    cmd = cmd,
    root_dir = root,
  }, config))
  local client = vim.lsp.get_client_by_id(client_id)
  if not vim.wait(15000, function() return client.initialized end, 50) then
    table.insert(out.errors, "the server did not initialise")
  end
  return client
end

local function command(client, name, arg)
  local response, err = client.request_sync("workspace/executeCommand",
    { command = name, arguments = { arg } }, 60000)
  if err or response == nil or response.err then
    table.insert(out.errors, { command = name, error = err or (response and response.err) or "no response" })
    return nil
  end
  return response.result
end

-- Waits until the effective configuration satisfies `check` (the server applies a
-- configuration when it arrives, asynchronously).
local function configuration(client, check)
  local result
  for _ = 1, 100 do
    result = command(client, "pygent.configuration", {})
    if result == nil or check(result.settings) then return result end
    vim.wait(100)
  end
  table.insert(out.errors, { configuration = result })
  return result
end

-- 1. `settings`, sent once the client is initialised (as nvim-lspconfig does).
local client = start({
  settings = { pygent = { model = "nvim-model", approvalMode = "confirm", maxSteps = 12 } },
  on_init = function(c)
    c.notify("workspace/didChangeConfiguration", { settings = c.config.settings })
  end,
})
out.pulled = configuration(client, function(s) return s.model == "nvim-model" end)
local session = command(client, "pygent.session.new", { workspaceFolder = root, runtime = "local" })
if session then
  out.session = session
  out.prompt = command(client, "pygent.session.prompt", { sessionId = session.sessionId, prompt = "hi" })
  -- 2. A change: edit the settings and tell the server (the live session follows).
  client.config.settings.pygent.approvalMode = "never"
  client.notify("workspace/didChangeConfiguration", { settings = client.config.settings })
  out.changed = configuration(client, function(s) return s.approvalMode == "never" end)
  out.list = command(client, "pygent.session.list", {})
end
client.stop()

-- 3. `init_options`: for a server started with its configuration up front.
local other = start({ init_options = { pygent = { model = "nvim-init-model", runtime = "local" } } })
out.initial = configuration(other, function(s) return s.model == "nvim-init-model" end)
other.stop()
finish()
