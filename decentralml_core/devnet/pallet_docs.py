"""The pallets' docs as their metadata carries them: one string per doc-comment line.

System's, Balances' and Sudo's errors carry polkadot-v1.0.0's doc comments.

Upstream's calls 0-1 and its 21 errors carry upstream's own doc comments verbatim (typos included:
they are upstream's metadata); upstream documents no ``send_task_result``, and what we appended after
upstream's indices is documented here to say what the devnet's pallet does. substrate-interface shows
an error's lines as ``receipt.error_message['docs']``; @polkadot/api as ``registry.findMetaError(…).docs``.
"""

from __future__ import annotations

CALL_DOCS: dict[str, list[str]] = {
    "create_task": [
        "Creates a new task with specified parameters.",
        "",
        "This function allows a user to create a new task with various parameters. It performs necessary",
        "validations, including checks for the payment amount, expiration block, and task-specific",
        "parameters based on the task type. Upon successful creation, it updates the task count, stores",
        "the task info in storage, and emits a creation event.",
        "",
        "# Parameters",
        "- `origin`: The origin of the call, which must be a signed account. This is typically the task creator.",
        "- `task_type`: Specifies the type of the task, e.g., DataAnnotators, ModelContributor, ModelEngineer.",
        "- `question`: A detailed description or question related to the task. It is an optional parameter and",
        "  should be provided as a bounded vector of bytes.",
        "- `pays_amount`: The amount of currency to be paid for completing the task. It should be a balance type.",
        "- `expiration_block`: The block number at which the task expires.",
        "- `max_assignments`: Maximum number of assignments for the task. This limits how many workers can be assigned.",
        "- `validation_strategy`: Strategy for validating the task results, e.g., AutoAccept, ManualAccept, CustomAccept.",
        "- `model_contributor_script_path`: For ModelContributor tasks, the path to the script to be executed. It is optional.",
        "- `model_contributor_script_storage_type`: Storage type for the script, e.g., IPFS, S3. It is optional.",
        "- `model_contributor_script_storage_credentials`: Credentials for accessing the script storage. Optional and a bounded vector of bytes.",
        "- `annotation_type`: For DataAnnotators tasks, the type of annotation required, e.g., Image, Audio. It is optional.",
        "- `annotation_media_samples`: Path to annotation media samples. It is a bounded vector of bounded vectors of bytes. Optional.",
        "- `annotation_files`: List of file names for annotation samples. It is a bounded vector of bounded vectors of bytes. Optional.",
        "- `annotation_class_labels`: Class labels for annotation samples. Optional and a bounded vector of bytes.",
        "- `annotation_class_coordinates`: Coordinates for class labels in annotation samples. Optional and a bounded vector of bytes.",
        "- `annotation_json`: Additional structured JSON data for the task. Optional and a bounded vector of bytes.",
        "- `annotation_files_storage_type`: Storage type for annotation files, e.g., IPFS, S3. Optional.",
        "- `annotation_files_storage_credentials`: Credentials for accessing annotation file storage. Optional and a bounded vector of bytes.",
        "- `model_engineer_path`: For ModelEngineer tasks, the path to the model. Optional and a bounded vector of bytes.",
        "- `model_engineer_storage_type`: Storage type for the model, e.g., IPFS, S3. Optional.",
        "- `model_engineer_storage_credentials`: Credentials for accessing the model storage. Optional and a bounded vector of bytes.",
        "# Errors",
        "Returns an error if any validation fails, including invalid payment amount, premature expiration",
        "block, missing required parameters based on task type, etc.",
        "# Events",
        "Emits `TaskCreated` event on successful task creation.",
        "# Example",
        "```",
        "Pallet::create_task(",
        "    Origin::signed(creator_account),",
        "    TaskType::ModelContributor,",
        "    Some(question),",
        "    pays_amount,",
        "    expiration_block,",
        "    max_assignments,",
        "    ValidationStrategy::AutoAccept,",
        "    ... // other parameters",
        ")?;",
        "```",
    ],
    "assign_task": [
        "Assigns a task to a worker.",
        "",
        "This function is called to assign an existing task, identified by `task_id`, to a worker.",
        "The function verifies that the task exists and has not exceeded its maximum number of assignments.",
        "On successful assignment, it increments the task result submission count, creates a new",
        "`TaskResultSubmission` struct with the assigned worker and current block number, and updates",
        "relevant storage items. The function emits an event upon successful assignment.",
        "",
        "# Parameters",
        "- `origin`: The origin of the call, which must be a signed account.",
        "- `task_id`: The index of the task to be assigned.",
        "",
        "# Errors",
        "Returns an error if the task does not exist, has reached its maximum number of assignments,",
        "or any other condition for a valid assignment is not met.",
        "",
        "# Events",
        "Emits `TaskAssigned` event on successful assignment.",
        "",
        "# Example",
        "```",
        "Pallet::assign_task(Origin::signed(worker_account), task_id)?;",
        "```",
    ],
    "send_task_result": [
        "Submits the result of an assignment; the submission then waits for the creator's decision.",
        "",
        "Only the assigned worker submits, once, while the submission is `Assigned`. A `result` or a",
        "`result_path` is required; a path needs a storage type and credentials (empty for public storage).",
        "With market rules, the result must arrive by the task's `submit_within` deadline.",
        "",
        "# Events",
        "Emits `TaskResultSubmitted`.",
    ],
    "accept_task_result": [
        "The task's creator accepts a pending result: the worker is paid `pays_amount` from the",
        "task's escrow, exactly once (also after the review window).",
        "",
        "# Events",
        "Emits `TaskResultAccepted`.",
    ],
    "reject_task_result": [
        "The task's creator rejects a pending result with a reason, within the review window.",
        "The pay stays in escrow for the creator's refund by `close_task`.",
        "",
        "# Events",
        "Emits `TaskResultRejected`.",
    ],
    "close_task": [
        "The task's creator closes a task that expired or whose every assignment is decided, and is",
        "refunded the escrow no pending result can still claim.",
        "",
        "# Events",
        "Emits `TaskClosed`.",
    ],
    "create_task_with_terms": [
        "`create_task` under market rules: an assignment deadline (`submit_within` blocks), a review",
        "window (`review_window` blocks, after which the worker may `claim_payment`) and qualifications",
        "(`min_accepted`, `max_rejection_rate`, `min_distinct_creators`, `max_abandonment_rate`). A `client_token`",
        "makes the call idempotent: the same creator and token again fail with `DuplicateClientToken`.",
        "",
        "# Events",
        "Emits `TaskCreated`.",
    ],
    "claim_payment": [
        "The worker takes the pay of a result the creator left undecided past the task's review",
        "window; paid from the task's escrow, exactly once.",
        "",
        "# Events",
        "Emits `PaymentClaimed`.",
    ],
}

ERROR_DOCS: dict[str, list[str]] = {
    "TaskInvalidPaysAmount": [
        "you must deposit something for every job",
    ],
    "TaskEndTooEarly": [
        "Task must end after it starts",
    ],
    "Overflow": [
        "Addition triggered an Overflow",
    ],
    "MissingAnnotationType": [
        "if the task type is data annotation then we must have a annotation type",
    ],
    "MissingAnnotationFiles": [
        "if the task type is data annotation then we must have files to annotate",
    ],
    "MissingAnnotationFilesStorageType": [
        "if the task type is data annotation  we need to know where the files are coming from",
    ],
    "MissingModelContributorScriptPath": [
        "if the task type is model contributor we need to know the script path",
    ],
    "MissingModelContributorScriptStorageType": [
        "if the task type is model contributor we need to know where the file is stored",
    ],
    "MissingModelEngineerPath": [
        "if the task type is model engineer we need to know the path of the model",
    ],
    "MissingModelEngineerStorageType": [
        "if the task type is model engineer we to knwo the storage type",
    ],
    "InvalidMaxAssignments": [
        "need to have at least 1 assignment otherwise it is an invalid task",
    ],
    "InvalidQuestion": [
        "need to have at least 1 character in the question otherwise it's an invalid task",
    ],
    "InvalidTaskType": [
        "Invalid task type Model Engineer,",
    ],
    "TaskNotFound": [
        "The specified task does not exist.",
    ],
    "MaxAssignmentsReached": [
        "The task has reached its maximum number of assignments.",
    ],
    "OpenTasksLimitReached": [
        "Reached 1 million open tasks",
    ],
    "SubmissionNotFound": [
        "This error indicates that a specified task result submission could not be found in the system.",
        "It occurs when a function tries to retrieve a `TaskResultSubmission` from storage using a given `submission_index`,",
        "but no corresponding entry exists.",
    ],
    "InvalidStatus": [
        "This error suggests that the task result submission is in an inappropriate status for the requested operation.",
        "It is used when an operation requires the `TaskResultSubmission` to be in a specific state (e.g., 'Assigned'),",
        "but the actual status of the submission is different.",
    ],
    "NotAuthorized": [
        "This error implies that the caller of the function does not have the necessary permissions to perform the action.",
        "It is returned when a caller, typically a worker, attempts to perform an operation on a submission that they do not own",
        "or are not authorized to modify.",
    ],
    "WorkerSubmissionLimit": [
        "This error is used when a worker has reached the limit of task result submissions they are allowed to make.",
        "It prevents a single worker from submitting results for an excessive number of tasks, ensuring fair opportunity for others.",
    ],
    "InvalidResultSubmission": [
        "This error indicates that the submission of task results is either incomplete or improperly formatted.",
        "It is triggered when a `TaskResultSubmission` lacks necessary information, such as a result or result path,",
        "or if the provided information does not meet the required criteria. This can include cases where a result",
        "path is provided without accompanying storage type and credentials, or when both result and result path",
        "are missing in the submission.",
    ],
    "TaskExpired": [
        "The task is past its expiration block: it takes no new assignments or results.",
    ],
    "AlreadyAssigned": [
        "This worker already holds (or abandoned) an assignment of the task.",
    ],
    "TaskNotExpired": [
        "A task is closed only after it expires or once every assignment is decided.",
    ],
    "TaskClosed": [
        "The task is closed.",
    ],
    "AlreadyDecided": [
        "The result was accepted, rejected or claimed already: nobody is paid twice.",
    ],
    "ResultNotSubmitted": [
        "The assignment has no result to decide yet.",
    ],
    "InsufficientEscrow": [
        "The task's escrow cannot cover the pay (an inconsistency: should not happen).",
    ],
    "SubmissionDeadlinePassed": [
        "The result came after the task's `submit_within` deadline; the slot was given back.",
    ],
    "ReviewWindowOpen": [
        "`claim_payment` before the creator's review window ended.",
    ],
    "ReviewWindowClosed": [
        "The creator's review window ended: the result can no longer be rejected (the worker may claim).",
    ],
    "NoReviewWindow": [
        "`claim_payment` on a task without a review window: only the creator decides.",
    ],
    "TooFewAccepted": [
        "The worker has fewer accepted results than the task's `min_accepted`.",
    ],
    "RejectionRateTooHigh": [
        "The worker's rejection rate is above the task's `max_rejection_rate`.",
    ],
    "DuplicateClientToken": [
        "This creator already created a task with this client token.",
    ],
    "InvalidTaskTerms": [
        "A deadline or review window of 0 blocks, or a rejection rate above 1,000,000 parts per million.",
    ],
    "TooManyDeadlines": [
        "Too many assignments fall due at the same block; assign again in the next block.",
    ],
    "TooFewDistinctCreators": [
        "Fewer creators than the task's `min_distinct_creators`, not counting the task's own creator,",
        "accepted the worker's results.",
    ],
    "AbandonmentRateTooHigh": [
        "The worker abandoned more of its assignments than the task's `max_abandonment_rate` allows.",
    ],
    "EmptyClientToken": [
        "A client token is 1 to 64 bytes; omit it for no idempotence.",
    ],
}

SYSTEM_ERROR_DOCS: dict[str, list[str]] = {
    "InvalidSpecName": ["The name of specification does not match between the current runtime",
                        "and the new runtime."],
    "SpecVersionNeedsToIncrease": ["The specification version is not allowed to decrease between the current runtime",
                                   "and the new runtime."],
    "FailedToExtractRuntimeVersion": ["Failed to extract the runtime version from the new runtime.", "",
                                      "Either calling `Core_version` or decoding `RuntimeVersion` failed."],
    "NonDefaultComposite": ["Suicide called when the account has non-default composite data."],
    "NonZeroRefCount": ["There is a non-zero reference count preventing the account from being purged."],
    "CallFiltered": ["The origin filter prevent the call to be dispatched."],
}

BALANCES_ERROR_DOCS: dict[str, list[str]] = {
    "VestingBalance": ["Vesting balance too high to send value."],
    "LiquidityRestrictions": ["Account liquidity restrictions prevent withdrawal."],
    "InsufficientBalance": ["Balance too low to send value."],
    "ExistentialDeposit": ["Value too low to create account due to existential deposit."],
    "Expendability": ["Transfer/payment would kill account."],
    "ExistingVestingSchedule": ["A vesting schedule already exists for this account."],
    "DeadAccount": ["Beneficiary account must pre-exist."],
    "TooManyReserves": ["Number of named reserves exceed `MaxReserves`."],
    "TooManyHolds": ["Number of holds exceed `MaxHolds`."],
    "TooManyFreezes": ["Number of freezes exceed `MaxFreezes`."],
}
