//! A small ledger state machine for engine tests: deposits, withdrawals that can be refused,
//! holds that expire by log time. It exercises every part of the `StateMachine` contract.

#![allow(dead_code)]

use cairn_engine::{Decision, Stamp, StateMachine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    Deposit {
        account: String,
        amount: u64,
    },
    Withdraw {
        account: String,
        amount: u64,
    },
    Hold {
        account: String,
        amount: u64,
        ttl_ms: u64,
    },
    /// Many events in one command (to exercise large records).
    Burst {
        account: String,
        count: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Deposited {
        account: String,
        amount: u64,
    },
    Withdrawn {
        account: String,
        amount: u64,
    },
    Held {
        hold_id: u64,
        account: String,
        amount: u64,
        expires_at_ms: u64,
    },
    Expired {
        hold_id: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    Insufficient { available: u64 },
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub balance: u64,
    pub hold_id: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub account: String,
    pub amount: u64,
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub balances: BTreeMap<String, u64>,
    pub holds: BTreeMap<u64, Hold>,
    pub next_hold_id: u64,
    pub last_lsn: u64,
}

impl Ledger {
    pub fn balance(&self, account: &str) -> u64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    pub fn held(&self, account: &str) -> u64 {
        self.holds
            .values()
            .filter(|h| h.account == account)
            .map(|h| h.amount)
            .sum()
    }

    pub fn available(&self, account: &str) -> u64 {
        self.balance(account) - self.held(account)
    }
}

impl StateMachine for Ledger {
    type Command = Command;
    type Event = Event;
    type Reply = Reply;
    type Error = Refusal;
    type Frozen = Ledger;

    fn decide(&self, command: &Command, now_ms: u64) -> Result<Decision<Event, Reply>, Refusal> {
        match command {
            Command::Deposit { account, amount } => {
                if *amount == 0 {
                    return Err(Refusal::Invalid("amount must be positive".into()));
                }
                let balance = self.balance(account) + amount;
                let events = vec![Event::Deposited {
                    account: account.clone(),
                    amount: *amount,
                }];
                Ok(Decision {
                    events,
                    reply: Reply {
                        balance,
                        hold_id: None,
                    },
                })
            }
            Command::Withdraw { account, amount } => {
                let available = self.available(account);
                if *amount > available {
                    return Err(Refusal::Insufficient { available });
                }
                let events = vec![Event::Withdrawn {
                    account: account.clone(),
                    amount: *amount,
                }];
                Ok(Decision {
                    events,
                    reply: Reply {
                        balance: self.balance(account) - amount,
                        hold_id: None,
                    },
                })
            }
            Command::Hold {
                account,
                amount,
                ttl_ms,
            } => {
                let available = self.available(account);
                if *amount > available {
                    return Err(Refusal::Insufficient { available });
                }
                let hold_id = self.next_hold_id;
                let events = vec![Event::Held {
                    hold_id,
                    account: account.clone(),
                    amount: *amount,
                    expires_at_ms: now_ms + ttl_ms,
                }];
                Ok(Decision {
                    events,
                    reply: Reply {
                        balance: self.balance(account),
                        hold_id: Some(hold_id),
                    },
                })
            }
            Command::Burst { account, count } => {
                let events = (0..*count)
                    .map(|_| Event::Deposited {
                        account: account.clone(),
                        amount: 1,
                    })
                    .collect();
                let balance = self.balance(account) + u64::from(*count);
                Ok(Decision {
                    events,
                    reply: Reply {
                        balance,
                        hold_id: None,
                    },
                })
            }
        }
    }

    fn apply(&mut self, event: &Event, stamp: Stamp) {
        assert!(stamp.lsn.0 >= self.last_lsn, "events arrive in LSN order");
        self.last_lsn = stamp.lsn.0;
        match event {
            Event::Deposited { account, amount } => {
                *self.balances.entry(account.clone()).or_default() += amount
            }
            Event::Withdrawn { account, amount } => {
                let balance = self.balances.entry(account.clone()).or_default();
                *balance = balance
                    .checked_sub(*amount)
                    .expect("withdrawal never overdraws");
            }
            Event::Held {
                hold_id,
                account,
                amount,
                expires_at_ms,
            } => {
                self.holds.insert(
                    *hold_id,
                    Hold {
                        account: account.clone(),
                        amount: *amount,
                        expires_at_ms: *expires_at_ms,
                    },
                );
                self.next_hold_id = hold_id + 1;
            }
            Event::Expired { hold_id } => {
                self.holds.remove(hold_id);
            }
        }
    }

    fn due(&self, now_ms: u64, max: usize) -> Vec<Event> {
        self.holds
            .iter()
            .filter(|(_, hold)| hold.expires_at_ms <= now_ms)
            .take(max)
            .map(|(hold_id, _)| Event::Expired { hold_id: *hold_id })
            .collect()
    }

    fn freeze(&self) -> Ledger {
        self.clone()
    }

    fn encode_frozen(frozen: &Ledger, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(&postcard::to_stdvec(frozen).map_err(|e| e.to_string())?);
        Ok(())
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        postcard::from_bytes(bytes).map_err(|e| e.to_string())
    }

    fn summary(&self) -> String {
        format!(
            "{} accounts, {} holds",
            self.balances.len(),
            self.holds.len()
        )
    }
}
