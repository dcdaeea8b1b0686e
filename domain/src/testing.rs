//! One given/when/then for every aggregate: given a history, when a command, then the
//! events decided (or the refusal). Pure, so use-case tests elsewhere may use it too.
//!
//! ```
//! use medledger_domain::testing::given;
//! use medledger_domain::catalog::{Dataset, DatasetCommand};
//! given::<Dataset>([]).when(DatasetCommand::Retire).then_refused(medledger_domain::DomainError::NotFound("dataset"));
//! ```

use crate::{Aggregate, DomainError};

/// A history to decide against.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
}

/// What a command decided against a history.
pub struct Then<A: Aggregate> {
    history: Vec<A::Event>,
    decided: Result<Vec<A::Event>, DomainError>,
}

/// Starts from `history` (oldest first).
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    Given { history: history.into_iter().collect() }
}

impl<A: Aggregate> Given<A> {
    /// The aggregate as the history leaves it.
    pub fn state(&self) -> A {
        A::from_events(&self.history)
    }

    pub fn history(&self) -> &[A::Event] {
        &self.history
    }

    /// Decides `command` and, when it is not refused, goes on from what it decided: for
    /// tests that walk an aggregate through several commands.
    pub fn decide(&mut self, command: A::Command) -> Result<Vec<A::Event>, DomainError>
    where
        A::Event: Clone,
    {
        let decided = self.state().handle(command)?;
        self.history.extend(decided.iter().cloned());
        Ok(decided)
    }

    pub fn when(self, command: A::Command) -> Then<A> {
        let decided = self.state().handle(command);
        Then { history: self.history, decided }
    }
}

impl<A: Aggregate> Then<A>
where
    A::Event: PartialEq,
{
    /// Asserts the decided events; the history goes on with them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> Given<A> {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        assert_eq!(self.decided, Ok(expected), "then: the decided events");
        self.and()
    }

    /// Asserts that nothing was decided (a no-op, not a refusal).
    #[track_caller]
    pub fn then_nothing(self) -> Given<A> {
        self.then([])
    }

    /// Asserts the refusal; the history goes on unchanged.
    #[track_caller]
    pub fn then_refused(self, error: DomainError) -> Given<A> {
        assert_eq!(self.decided, Err(error), "then: the refusal");
        Given { history: self.history }
    }
}

impl<A: Aggregate> Then<A> {
    /// The decision as it came.
    pub fn result(&self) -> &Result<Vec<A::Event>, DomainError> {
        &self.decided
    }

    pub fn into_result(self) -> Result<Vec<A::Event>, DomainError> {
        self.decided
    }

    /// The decided events (panics on a refusal: for tests that inspect them).
    #[track_caller]
    pub fn events(&self) -> &[A::Event] {
        match &self.decided {
            Ok(events) => events,
            Err(e) => panic!("the command was refused: {e:?}"),
        }
    }

    /// Goes on from the history plus whatever was decided (nothing on a refusal).
    pub fn and(self) -> Given<A> {
        let mut history = self.history;
        history.extend(self.decided.unwrap_or_default());
        Given { history }
    }
}
