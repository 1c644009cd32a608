-- Argo CD health check for dbmigrate.dev/Migration.
-- Install: argocd-cm key `resource.customizations.health.dbmigrate.dev_Migration` (docs/argocd.md).
-- Reads only status: observedGeneration, phase, conditions (Ready/Stalled/Reconciling), message.
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1); tested with Debian's lua5.4 against status
-- objects produced by the operator on a real apiserver (tests/integration/test_gitops_argocd_health.py).
--   Degraded     Stalled=True or phase Failed: a human must act (the message says what)
--   Suspended    phase Expired: the test server was removed after its TTL; nothing runs until the
--                spec changes (mode: execute) or the Migration is deleted. Also an execute with
--                switchover: Manual that is ready and waits for its approval annotation
--   Healthy      Ready=True: the test server is ready (mode: test) or the move completed (execute)
--   Progressing  anything else, including a spec the operator has not observed yet
local hs = {}

local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then
      return c
    end
  end
  return nil
end

-- The first non-empty argument (select, not ipairs: arguments may be nil).
local function first_message(...)
  for i = 1, select("#", ...) do
    local m = select(i, ...)
    if m ~= nil and m ~= "" then
      return m
    end
  end
  return ""
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the dbmigrate operator to report status"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the dbmigrate operator to observe generation " .. tostring(generation)
  return hs
end

local phase = obj.status.phase or ""
local ready = condition("Ready")
local stalled = condition("Stalled")
local reconciling = condition("Reconciling")

if phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  hs.status = "Degraded"
  hs.message = first_message(stalled and stalled.message, obj.status.message, ready and ready.message,
    "Migration failed")
  return hs
end

if phase == "Expired" then
  hs.status = "Suspended"
  hs.message = first_message(obj.status.message,
    "The test server expired; set spec.mode to execute or delete the Migration")
  return hs
end

local approval = condition("SwitchoverApproved")
if approval ~= nil and approval.status == "False" and approval.reason == "AwaitingApproval" then
  hs.status = "Suspended"
  hs.message = first_message(approval.message, "Waiting for approval to switch over")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  local msg = first_message(ready.message, obj.status.message, phase)
  local ts = obj.status.testServer
  if phase == "Ready" and ts ~= nil and ts.host ~= nil then
    msg = msg .. " (test server " .. ts.host .. ":" .. tostring(ts.port or 5432) .. ")"
  end
  hs.message = msg
  return hs
end

hs.status = "Progressing"
hs.message = first_message(reconciling and reconciling.message, obj.status.message, ready and ready.message,
  "Phase " .. phase)
return hs
