// A consumer of an Open Payments access token, with Interledger's own SDK (@interledger/open-payments), driven by
// tests/integration/test_openpayments_consumers.py. Responses are validated against the SDK's bundled OpenAPI files.
//
//   node consumer.js < {walletAddressUrl, privateKeyPem, keyId, steps: [step...]}   -> stdout {results: [...]}
//
// Steps, each answered by {ok: true, ...} or {ok: false, status, code, description, validationErrors}:
//   {op: "wallet", url}                                    GET the wallet address, its keys and its DID document
//   {op: "list", accessToken, resourceServer, walletAddress}   list incoming payments (first 10)
//   {op: "create", accessToken, resourceServer, walletAddress} create an incoming payment
//   {op: "rotate", accessToken, manage}                    rotate: answers {value, manage, expiresIn}
//   {op: "revoke", accessToken, manage}                    revoke the token
'use strict'

const crypto = require('crypto')
const { createAuthenticatedClient } = require('@interledger/open-payments')

async function step (client, s) {
  switch (s.op) {
    case 'wallet': {
      const wallet = await client.walletAddress.get({ url: s.url })
      const keys = await client.walletAddress.getKeys({ url: s.url })
      let did = null
      try {
        did = await client.walletAddress.getDIDDocument({ url: s.url })
      } catch (error) {
        did = { error: failure(error) }
      }
      return { ok: true, resourceServer: wallet.resourceServer, authServer: wallet.authServer, keys: keys.keys.length, did }
    }
    case 'list': {
      const page = await client.incomingPayment.list(
        { url: s.resourceServer, walletAddress: s.walletAddress, accessToken: s.accessToken }, { first: 10 })
      return { ok: true, count: page.result.length, hasNextPage: page.pagination.hasNextPage }
    }
    case 'create': {
      const payment = await client.incomingPayment.create(
        { url: s.resourceServer, accessToken: s.accessToken },
        { walletAddress: s.walletAddress, incomingAmount: { value: '100', assetCode: 'USD', assetScale: 2 } })
      return { ok: true, id: payment.id }
    }
    case 'rotate': {
      const rotated = await client.token.rotate({ url: s.manage, accessToken: s.accessToken })
      const token = rotated.access_token
      return { ok: true, value: token.value, manage: token.manage, expiresIn: token.expires_in }
    }
    case 'revoke': {
      await client.token.revoke({ url: s.manage, accessToken: s.accessToken })
      return { ok: true }
    }
    default:
      throw new Error('unknown step ' + s.op)
  }
}

function failure (error) {
  return {
    ok: false,
    status: error.status || null,
    code: error.code || null,
    description: error.description || String(error.message || error),
    validationErrors: error.validationErrors || null
  }
}

async function main () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const input = JSON.parse(Buffer.concat(chunks).toString('utf-8'))
  const client = await createAuthenticatedClient({
    walletAddressUrl: input.walletAddressUrl,
    privateKey: crypto.createPrivateKey(input.privateKeyPem),
    keyId: input.keyId,
    useHttp: true, // the simulator listens on plain HTTP on the loopback
    validateResponses: true
  })
  const results = []
  for (const s of input.steps) {
    try {
      results.push(await step(client, s))
    } catch (error) {
      results.push(failure(error))
    }
  }
  process.stdout.write(JSON.stringify({ results }))
}

main().catch((error) => {
  process.stderr.write(String(error && error.message ? error.message : error) + '\n')
  process.exit(1)
})
