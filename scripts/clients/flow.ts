// register -> login -> refresh -> /me -> logout through openapi-fetch typed by the
// generated schema, unmodified (scripts/contract.sh compiles and runs it against a live
// keel-api).
//
//   node flow.js BASE_URL
import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

const baseUrl = process.argv[2];
const client = createClient<paths>({ baseUrl });
const email = `typescript-${crypto.randomUUID().slice(0, 12)}@example.com`;
const password = "a typescript client's password";

function check(ok: boolean, what: string, response: Response): void {
  if (!ok) {
    throw new Error(`flow.ts: ${what}: answered ${response.status}`);
  }
}
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

const registered = await client.POST("/api/v1/auth/register", {
  body: { email, password, full_name: "Ts" },
});
check(registered.response.status === 202, "register", registered.response);

const login = await client.POST("/api/v1/auth/login", { body: { email, password } });
if (!login.data) throw new Error(`flow.ts: login answered ${login.response.status}`);

const renewed = await client.POST("/api/v1/auth/refresh", {
  body: { refresh_token: login.data.refresh_token },
});
if (!renewed.data) throw new Error(`flow.ts: refresh answered ${renewed.response.status}`);
const { access_token, refresh_token } = renewed.data;

const me = await client.GET("/api/v1/auth/me", { headers: bearer(access_token) });
if (!me.data) throw new Error(`flow.ts: /auth/me answered ${me.response.status}`);
check(me.data.email === email && me.data.full_name === "Ts", "/auth/me shows the account", me.response);

const out = await client.POST("/api/v1/auth/logout", {
  body: { refresh_token },
  headers: bearer(access_token),
});
check(out.response.status === 204, "logout", out.response);

const after = await client.GET("/api/v1/auth/me", { headers: bearer(access_token) });
check(after.response.status === 401 && after.error?.status === 401, "/auth/me after logout is refused", after.response);
const reuse = await client.POST("/api/v1/auth/refresh", { body: { refresh_token } });
check(reuse.response.status === 401, "the spent refresh token is refused", reuse.response);

console.log(`flow.ts: register, login, refresh, /me and logout passed for ${email}`);
