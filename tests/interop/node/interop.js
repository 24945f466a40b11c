// Interledger's own signature library, driven by the Python tests (tests/unit/plugins/module_utils/test_openpayments_interop.py).
//
//   node interop.js sign      stdin {privateKeyPem, keyId, method, url, headers, body?}  -> stdout {headers}
//   node interop.js validate  stdin {jwk, method, url, headers, body?}                   -> stdout {headersValid, signatureValid}
//
// `sign` is what the Open Payments client does (createHeaders); `validate` is what Rafiki's signature
// middleware does with a request: validateSignatureHeaders, then validateSignature against the client's JWK,
// with the body re-serialised as JSON.stringify(parsed body).
'use strict'

const crypto = require('crypto')
const { createHeaders, validateSignatureHeaders, validateSignature } = require('@interledger/http-signature-utils')

async function sign (input) {
  const privateKey = crypto.createPrivateKey(input.privateKeyPem)
  const request = { method: input.method, url: input.url, headers: { ...(input.headers || {}) } }
  if (input.body !== undefined && input.body !== null) request.body = input.body
  const headers = await createHeaders({ request, privateKey, keyId: input.keyId })
  return { headers }
}

async function validate (input) {
  const headers = {}
  for (const [name, value] of Object.entries(input.headers || {})) headers[name.toLowerCase()] = value
  const request = { method: input.method, url: input.url, headers }
  if (input.body) request.body = JSON.stringify(JSON.parse(input.body))
  const headersValid = validateSignatureHeaders(request)
  const signatureValid = headersValid ? await validateSignature(input.jwk, request) : false
  return { headersValid, signatureValid }
}

async function main () {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const input = JSON.parse(Buffer.concat(chunks).toString('utf-8'))
  const command = { sign, validate }[process.argv[2]]
  if (!command) throw new Error('usage: node interop.js sign|validate < request.json')
  process.stdout.write(JSON.stringify(await command(input)))
}

main().catch((error) => {
  process.stderr.write(String(error && error.message ? error.message : error) + '\n')
  process.exit(1)
})
