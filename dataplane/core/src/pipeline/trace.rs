//! A traced burst (see `crate::trace`): each frame the tracer wants runs as any other,
//! between a look at what the stages will read and a look at what they changed.

use super::demux::{toward, Toward};
use super::flows::reply_key;
use super::{PacketBuf, State, Verdict};
use crate::cluster::rank;
use crate::flow::FlowKey;
use crate::services::Services;
use crate::trace::{
    Aim, Candidate, Counters, Lane, Outcome, Ranking, Record, Seen, Tracer, MAX_CANDIDATES,
};
use crate::wire::tunnel;

impl State {
    /// Runs a frame from `in_port` through `frame_in`'s lanes, traced when the tracer
    /// wants it, and counts its verdict (so the trace sees what was counted).
    pub(super) fn traced_frame(
        &mut self,
        t: &mut Tracer,
        s: &Services,
        in_port: u8,
        pkt: &mut PacketBuf,
    ) -> Verdict {
        let forward_port = s.cluster.as_ref().map(|c| c.forward_port);
        let finish = |st: &mut State, v: Verdict| {
            st.count(v);
            st.give_back_released();
        };
        let Some(marked) = t.wants(pkt.frame(), forward_port) else {
            let v = self.frame_in(s, in_port, pkt);
            finish(self, v);
            return v;
        };
        let mut r = Record::new(self.worker, in_port, self.now.us, pkt.frame());
        r.marked = marked;
        let seen = Seen::of(pkt.frame(), forward_port);
        self.look_before(s, &seen, &mut r);
        let before = Counters::read(&self.counters);
        let queue = |st: &State, svc: u16| {
            st.queues
                .get(usize::from(svc))
                .map_or(0, |q| q.len() as u32)
        };
        let svc = match r.aim {
            Aim::Service(id) => Some(id),
            _ => None,
        };
        let q_before = svc.map(|id| queue(self, id));

        // What `frame_in` does, knowing which lane served the frame; a frame sent on to
        // another node carries the mark.
        self.trace_mark = tunnel::FLAG_TRACE;
        let mut lane = Lane::Stages;
        let mut v = None;
        if let Some(p) = self.plain_look(s, in_port, pkt.frame()) {
            v = self.plain_run(s, &p, pkt);
            if v.is_some() {
                lane = Lane::Plain;
            }
        }
        let v = v.unwrap_or_else(|| {
            let look = self.first_look(s, in_port, pkt.frame());
            self.run(s, in_port, &look, pkt)
        });
        self.trace_mark = 0;
        finish(self, v);

        r.lane = lane;
        r.verdict = outcome(v);
        r.after = crate::trace::Kept::of(pkt.frame());
        r.kept = r.key.and_then(|k| self.table.peek(&k).copied());
        if let (Some(id), Some(b)) = (svc, q_before) {
            r.queue = Some((id, b, queue(self, id)));
        }
        before.moved(&Counters::read(&self.counters), &mut r.counted);
        t.push(r);
        v
    }

    /// What the stages will read of this frame: its service, its flow's record, a new
    /// flow's candidates, the cluster's ranking.
    fn look_before(&self, s: &Services, seen: &Seen, r: &mut Record) {
        let Some(t) = seen.innermost() else {
            return;
        };
        if t.proto != crate::wire::l4::PROTO_TCP && t.proto != crate::wire::l4::PROTO_UDP {
            return;
        }
        let key = if t.v6 {
            FlowKey::v6(t.src, t.dst, t.sport, t.dport, t.proto)
        } else {
            let four = |a: [u8; 16]| [a[0], a[1], a[2], a[3]];
            FlowKey::v4(four(t.src), four(t.dst), t.sport, t.dport, t.proto)
        };
        let (aim, flow_key, request) = match toward(s, &key) {
            Toward::Service(svc) => (Aim::Service(svc.id), Some(key), true),
            Toward::Reply(id) => (Aim::Reply(id), reply_key(s, id, &key), false),
            Toward::Replies(ids) => {
                let k = ids
                    .iter()
                    .filter_map(|&id| reply_key(s, id, &key))
                    .find(|k| self.table.peek(k).is_some());
                (Aim::Replies, k, false)
            }
            Toward::Drop(why) => (Aim::Refused(why), None, true),
        };
        r.aim = aim;
        r.key = flow_key;
        r.found = flow_key.and_then(|k| self.table.peek(&k).copied());
        if let (Aim::Service(id), None) = (aim, r.found) {
            self.candidates(s, id, r);
        }
        if let (Some(cl), Some(k)) = (s.cluster.as_ref(), flow_key) {
            let h = if request {
                rank::of_request(&k)
            } else {
                rank::of_reply(&key)
            };
            let (primary, backup) = rank::top2(h, &cl.nodes, self.membership.eligible);
            r.ranking = Some(Ranking {
                primary,
                backup,
                me: cl.me,
                eligible: self.membership.eligible,
                serving: self.membership.serving,
            });
        }
    }

    /// The service's backends as a new flow's selection reads them.
    fn candidates(&self, s: &Services, id: u16, r: &mut Record) {
        let Some(svc) = s.services.get(usize::from(id)) else {
            return;
        };
        for (i, &b) in svc.backends.iter().enumerate() {
            if i == MAX_CANDIDATES {
                r.more_candidates = (svc.backends.len() - MAX_CANDIDATES) as u16;
                break;
            }
            let (Some(be), Some(input)) =
                (s.backends.get(usize::from(b)), s.inputs.get(usize::from(b)))
            else {
                continue;
            };
            r.candidates[usize::from(r.n_candidates)] = Candidate {
                backend: b,
                weight: input.weight,
                qos_weight: input.qos_weight as f32,
                ewma_us: input.ewma_us,
                active: self.load.active(b),
                max_flows: be.max_flows,
                eligible: be.eligible,
                up: be.up,
            };
            r.n_candidates += 1;
        }
    }
}

/// A verdict as the trace keeps it.
fn outcome(v: Verdict) -> Outcome {
    match v {
        Verdict::Tx(p) => Outcome::Sent(p),
        Verdict::Consumed(k) => Outcome::Absorbed(k),
        Verdict::Defer(w) => Outcome::Parked(w.lot),
        Verdict::Hold(s) => Outcome::Held(s),
        Verdict::Drop(r) => Outcome::Dropped(r),
    }
}
