// A small SMSC for the SMPP tests, on node-smpp (shares no code with Tidings).
//
// Usage: node server.js '<json options>'; prints "listening <port>" once ready.
// Options (all optional):
//   port            TCP port on 127.0.0.1 (0: any free port)
//   system_id       expected system_id ("tidings"), password expected password ("secret")
//   log             file to append every PDU received to, one JSON object a line
//   throttle_every  answer every Nth submit_sm with ESME_RTHROTTLED
//   queue_full_every  answer every Nth submit_sm with ESME_RMSGQFUL
//   reject          {"<destination_addr>": <command_status>} answers for given numbers
//   drop_after      close the connection, unanswered, at the Nth PDU of a session...
//   drop_sessions   ...for this many sessions (default 1)
//   receipt         "DELIVRD", "UNDELIV", "EXPIRED"...: send a deliver_sm receipt per submit_sm
//   receipt_tlvs    also put receipted_message_id and message_state TLVs in receipts
'use strict';
const fs = require('fs');
const smpp = require('smpp');
const PDU = require('smpp/lib/pdu').PDU;

// Keep the undecoded bytes of short_message and message_payload beside node-smpp's decoding,
// so the tests can check both.
const filter = PDU.prototype._filter;
PDU.prototype._filter = function (func) {
  if (func === 'decode') {
    if (Buffer.isBuffer(this.short_message)) this.raw_short_message = this.short_message.toString('hex');
    if (Buffer.isBuffer(this.message_payload)) this.raw_message_payload = this.message_payload.toString('hex');
  }
  return filter.call(this, func);
};

const opts = JSON.parse(process.argv[2] || '{}');
const systemId = opts.system_id || 'tidings';
const password = opts.password || 'secret';
const dropSessions = opts.drop_sessions === undefined ? 1 : opts.drop_sessions;
const STATES = {ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6, UNKNOWN: 7, REJECTD: 8};
let submits = 0;
let messageIds = 0;
let sessions = 0;

function record(entry) {
  if (opts.log) fs.appendFileSync(opts.log, JSON.stringify(entry) + '\n');
}

function describe(pdu) {
  const entry = {};
  for (const key of Object.keys(pdu)) {
    const value = pdu[key];
    if (Buffer.isBuffer(value)) entry[key] = {hex: value.toString('hex')};
    else if (key === 'short_message' && value && typeof value === 'object') {
      entry.short_message = {
        udh: (value.udh || []).map((u) => u.toString('hex')),
        message: Buffer.isBuffer(value.message) ? value.message.toString('hex') : value.message,
      };
    } else if (key === 'message_payload' && value && typeof value === 'object') {
      entry.message_payload = {message: Buffer.isBuffer(value.message) ? value.message.toString('hex') : value.message};
    } else entry[key] = value;
  }
  return entry;
}

const server = smpp.createServer(function (session) {
  const number = ++sessions;
  let pdus = 0;
  let bound = false;
  session.on('error', () => {});
  session.on('pdu', function (pdu) {
    pdus++;
    const entry = describe(pdu);
    entry.session = number;
    record(entry);
    if (opts.drop_after && pdus >= opts.drop_after && number <= dropSessions) {
      session.pause();
      session.destroy();
    }
  });
  session.on('bind_transceiver', function (pdu) {
    if (session.socket.destroyed) return;
    if (pdu.system_id !== systemId || pdu.password !== password) {
      session.send(pdu.response({command_status: pdu.password !== password ? smpp.ESME_RINVPASWD : smpp.ESME_RINVSYSID}));
      return;
    }
    bound = true;
    session.send(pdu.response({system_id: 'node-smsc'}));
  });
  session.on('enquire_link', (pdu) => session.socket.destroyed || session.send(pdu.response()));
  session.on('unbind', function (pdu) {
    session.send(pdu.response());
    session.close();
  });
  session.on('submit_sm', function (pdu) {
    if (session.socket.destroyed) return;
    if (!bound) {
      session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
      return;
    }
    submits++;
    let status = 0;
    if (opts.reject && opts.reject[pdu.destination_addr] !== undefined) status = opts.reject[pdu.destination_addr];
    else if (opts.throttle_every && submits % opts.throttle_every === 0) status = smpp.ESME_RTHROTTLED;
    else if (opts.queue_full_every && submits % opts.queue_full_every === 0) status = smpp.ESME_RMSGQFUL;
    if (status) {
      session.send(pdu.response({command_status: status}));
      return;
    }
    const id = 'msg' + (++messageIds);
    session.send(pdu.response({message_id: id}));
    if (opts.receipt && pdu.registered_delivery & 1) {
      const stat = opts.receipt;
      const err = stat === 'DELIVRD' ? '000' : '001';
      const text = 'id:' + id + ' sub:001 dlvrd:' + (stat === 'DELIVRD' ? '001' : '000') +
        ' submit date:2601011200 done date:2601011201 stat:' + stat + ' err:' + err + ' text:';
      const receipt = {
        source_addr: pdu.destination_addr,
        source_addr_ton: pdu.dest_addr_ton,
        source_addr_npi: pdu.dest_addr_npi,
        destination_addr: pdu.source_addr,
        esm_class: 0x04,
        short_message: text,
      };
      if (opts.receipt_tlvs) {
        receipt.receipted_message_id = id;
        receipt.message_state = STATES[stat] || 7;
      }
      setTimeout(() => session.socket.destroyed || session.deliver_sm(receipt, (resp) => {
        record({command: 'receipt_answered', id: id, command_status: resp.command_status, session: number});
      }), 20);
    }
  });
});

server.listen(opts.port || 0, '127.0.0.1', function () {
  process.stdout.write('listening ' + server.address().port + '\n');
});
process.on('SIGTERM', () => process.exit(0));
