// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClassifier} from "./Classifier.sol";
import {IIncentiveMechanism} from "./IncentiveMechanism.sol";
import {DataHandler} from "./DataHandler.sol";

/// @notice The entry point of a DCAI system: takes contributions, refunds and reports (takes), and
/// holds every deposit. Component addresses are immutables (no storage reads on the hot path).
/// Payouts follow checks-effects-interactions and a transient-storage lock rejects re-entry.
contract CollaborativeTrainer {
    string public name;
    string public description;
    string public encoder;

    DataHandler public immutable dataHandler;
    IIncentiveMechanism public immutable incentiveMechanism;
    IClassifier public immutable classifier;

    event AddData(int64[] d, uint64 c, uint256 t, address indexed sender, uint256 cost);

    error Reentrancy();
    error PaymentFailed(address to, uint256 amount);

    modifier nonReentrant() {
        bool locked;
        assembly {
            locked := tload(0)
        }
        if (locked) revert Reentrancy();
        assembly {
            tstore(0, 1)
        }
        _;
        assembly {
            tstore(0, 0)
        }
    }

    constructor(
        string memory name_,
        string memory description_,
        string memory encoder_,
        DataHandler dataHandler_,
        IIncentiveMechanism incentiveMechanism_,
        IClassifier classifier_
    ) {
        name = name_;
        description = description_;
        encoder = encoder_;
        dataHandler = dataHandler_;
        incentiveMechanism = incentiveMechanism_;
        classifier = classifier_;
    }

    function predict(int64[] calldata data) external view returns (uint64) {
        return classifier.predict(data);
    }

    function addData(int64[] calldata data, uint64 classification) external payable nonReentrant {
        (uint256 cost, bool train) = incentiveMechanism.handleAddData(msg.value, data, classification);
        uint256 time = dataHandler.handleAddData(msg.sender, cost, data, classification);
        if (train) classifier.update(data, classification);
        emit AddData(data, classification, time, msg.sender, cost);
        uint256 excess = msg.value - cost;
        if (excess > 0) _pay(msg.sender, excess);
    }

    function refund(int64[] calldata data, uint64 classification, uint256 addedTime) external nonReentrant {
        (uint256 claimableAmount, bool claimedBySubmitter, uint256 numClaims) =
            dataHandler.handleRefund(msg.sender, data, classification, addedTime);
        uint64 prediction = classifier.predict(data);
        uint256 refundAmount = incentiveMechanism.handleRefund(
            msg.sender, classification, addedTime, claimableAmount, claimedBySubmitter, prediction, numClaims
        );
        if (refundAmount > 0) _pay(msg.sender, refundAmount);
    }

    function report(int64[] calldata data, uint64 classification, uint256 addedTime, address originalAuthor)
        external
        nonReentrant
    {
        (bytes32 key, uint256 initialDeposit, uint256 claimableAmount, bool claimedByReporter, uint256 numClaims) =
            dataHandler.handleReport(msg.sender, data, classification, addedTime, originalAuthor);
        uint64 prediction = classifier.predict(data);
        uint256 rewardAmount = incentiveMechanism.handleReport(
            msg.sender,
            classification,
            addedTime,
            originalAuthor,
            initialDeposit,
            claimableAmount,
            claimedByReporter,
            prediction,
            numClaims
        );
        dataHandler.updateClaimableAmount(key, rewardAmount);
        if (rewardAmount > 0) _pay(msg.sender, rewardAmount);
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }
}
