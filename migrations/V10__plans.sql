-- Plans are data: a tenant's plan names one of the catalog plinth is configured with
-- (PLINTH_PLANS_FILE), no longer one of three fixed names. plinth validates the name it writes;
-- a name the catalog later drops gets the `free` plan's terms.
ALTER TABLE tenants DROP CONSTRAINT tenants_plan_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_plan_name CHECK (plan ~ '^[a-z][a-z0-9-]{0,31}$');

-- An operator moves a tenant to another plan through plinth (`plinth tenant set-plan`), under
-- the tenant's own context like any other write: the API role may change that column only.
GRANT UPDATE (plan) ON tenants TO plinth_app;
