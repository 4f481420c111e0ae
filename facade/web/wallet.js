// Wallet sign-in through an injected Solana wallet (window.solana: Phantom, Solflare, Backpack …):
// the facade issues the exact message, the wallet signs its UTF-8 bytes, the facade sets the cookie.

import { get, post, withQuery } from "./api.js";

function provider() {
  const wallet = window.solana ?? window.phantom?.solana;
  if (!wallet || typeof wallet.connect !== "function" || typeof wallet.signMessage !== "function") {
    throw new Error("No Solana wallet found: install one that can sign messages, then reload.");
  }
  return wallet;
}

function base64(bytes) {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** Connect the wallet, sign the issued message with it, and start a session: the signed-in user. */
export async function signIn() {
  const wallet = provider();
  const connected = await wallet.connect();
  const publicKey = connected?.publicKey ?? wallet.publicKey;
  if (!publicKey) throw new Error("The wallet did not share its public key.");
  const address = publicKey.toString();
  const { message } = await get(withQuery("/api/auth/nonce", { address }));
  const signed = await wallet.signMessage(new TextEncoder().encode(message), "utf8");
  const signature = signed?.signature ?? signed; // wallets answer {signature} or the bytes alone
  const { user } = await post("/api/auth/verify", { address, message, signature: base64(signature) });
  return user;
}

/** End the session (and let the wallet forget this site, where it can). */
export async function signOut() {
  await post("/api/auth/logout");
  try {
    await (window.solana ?? window.phantom?.solana)?.disconnect?.();
  } catch {
    // the session is over whatever the wallet says
  }
}

/** `{user, credits}` for the session's user, or null when nobody is signed in. */
export async function whoAmI() {
  try {
    return await get("/api/auth/me");
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}
