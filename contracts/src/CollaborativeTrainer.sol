// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IClassifier} from "./Classifier.sol";
import {IIncentiveMechanism} from "./IncentiveMechanism.sol";
import {DataHandler} from "./DataHandler.sol";

/// @notice The entry point of a DCAI system: takes contributions, refunds and reports (takes), and
/// holds every deposit. Component addresses are immutables (no storage reads on the hot path).
/// Payouts follow checks-effects-interactions and a transient-storage lock rejects re-entry.
///
/// Gas: the sample is checked once (each word a sign-extended int64) and then forwarded to the
/// components and the AddData event as raw calldata words with one copy each. Solidity's own
/// encoder would re-validate and copy it element by element for every call (about 50 gas per
/// element per call). The calls and their return values are exactly those of the plain Solidity
/// version: same selectors, same ABI encoding, bubbled revert data.
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
        return _predict(data);
    }

    function addData(int64[] calldata data, uint64 classification) external payable nonReentrant {
        uint256 cost;
        bool train;
        uint256 p = _head();
        bytes4 sel = IIncentiveMechanism.handleAddData.selector;
        assembly {
            mstore(p, sel)
            mstore(add(p, 0x04), callvalue())
            mstore(add(p, 0x24), 0x60)
            mstore(add(p, 0x44), classification)
        }
        _call(address(incentiveMechanism), p, 0x64, data, 0x40);
        assembly {
            cost := mload(p)
            train := iszero(iszero(mload(add(p, 0x20))))
        }
        // A model that trains reads every word and rejects a malformed one itself (all of ours do);
        // without training, the check happens here, before anything is recorded for good.
        if (!train) _requireInt64Words(data);

        uint256 time;
        sel = DataHandler.handleAddData.selector;
        assembly {
            mstore(p, sel)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), cost)
            mstore(add(p, 0x44), 0x80)
            mstore(add(p, 0x64), classification)
        }
        _call(address(dataHandler), p, 0x84, data, 0x20);
        assembly {
            time := mload(p)
        }

        if (train) {
            sel = IClassifier.update.selector;
            assembly {
                mstore(p, sel)
                mstore(add(p, 0x04), 0x40)
                mstore(add(p, 0x24), classification)
            }
            _call(address(classifier), p, 0x44, data, 0);
        }

        // emit AddData(data, classification, time, msg.sender, cost)
        bytes32 topic = AddData.selector;
        assembly {
            mstore(p, 0x80)
            mstore(add(p, 0x20), classification)
            mstore(add(p, 0x40), time)
            mstore(add(p, 0x60), cost)
            let n := data.length
            mstore(add(p, 0x80), n)
            calldatacopy(add(p, 0xa0), data.offset, shl(5, n))
            log2(p, add(0xa0, shl(5, n)), topic, caller())
        }

        uint256 excess = msg.value - cost;
        if (excess > 0) _pay(msg.sender, excess);
    }

    function refund(int64[] calldata data, uint64 classification, uint256 addedTime) external nonReentrant {
        // No word check here: a malformed sample hashes to a key that was never stored.
        uint256 claimableAmount;
        bool claimedBySubmitter;
        uint256 numClaims;
        uint256 p = _head();
        bytes4 sel = DataHandler.handleRefund.selector;
        assembly {
            mstore(p, sel)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), 0x80)
            mstore(add(p, 0x44), classification)
            mstore(add(p, 0x64), addedTime)
        }
        _call(address(dataHandler), p, 0x84, data, 0x60);
        assembly {
            claimableAmount := mload(p)
            claimedBySubmitter := iszero(iszero(mload(add(p, 0x20))))
            numClaims := mload(add(p, 0x40))
        }
        uint64 prediction = _predict(data);
        uint256 refundAmount = incentiveMechanism.handleRefund(
            msg.sender, classification, addedTime, claimableAmount, claimedBySubmitter, prediction, numClaims
        );
        if (refundAmount > 0) _pay(msg.sender, refundAmount);
    }

    function report(int64[] calldata data, uint64 classification, uint256 addedTime, address originalAuthor)
        external
        nonReentrant
    {
        uint256 r = _handleReport(data, classification, addedTime, originalAuthor);
        uint256 rewardAmount = _imReport(r, classification, addedTime, originalAuthor, _predict(data));
        _updateClaimableAmount(r, rewardAmount);
        if (rewardAmount > 0) _pay(msg.sender, rewardAmount);
    }

    /// dataHandler.updateClaimableAmount(key, paid) with the key read from memory at r. The data
    /// handler has just answered handleReport, so it has code: no extcodesize check is needed.
    function _updateClaimableAmount(uint256 r, uint256 paid) private {
        bytes4 sel = DataHandler.updateClaimableAmount.selector;
        address dh = address(dataHandler);
        assembly {
            let q := add(r, 0xa0)
            mstore(q, sel)
            mstore(add(q, 0x04), mload(r)) // key
            mstore(add(q, 0x24), paid)
            if iszero(call(gas(), dh, 0, q, 0x44, 0, 0)) {
                returndatacopy(q, 0, returndatasize())
                revert(q, returndatasize())
            }
        }
    }

    /// dataHandler.handleReport(msg.sender, ...): its five return words stay in memory at the
    /// returned pointer (key, initialDeposit, claimableAmount, claimedByReporter, numClaims).
    function _handleReport(int64[] calldata data, uint64 classification, uint256 addedTime, address originalAuthor)
        private
        returns (uint256 p)
    {
        p = _head();
        bytes4 sel = DataHandler.handleReport.selector;
        assembly {
            mstore(p, sel)
            mstore(add(p, 0x04), caller())
            mstore(add(p, 0x24), 0xa0)
            mstore(add(p, 0x44), classification)
            mstore(add(p, 0x64), addedTime)
            mstore(add(p, 0x84), originalAuthor)
        }
        _call(address(dataHandler), p, 0xa4, data, 0xa0);
        assembly {
            mstore(0x40, add(p, 0xa0)) // keep the results: later calls use the memory after them
        }
    }

    /// incentiveMechanism.handleReport(...) with the data handler's results read from memory at r.
    function _imReport(uint256 r, uint64 classification, uint256 addedTime, address originalAuthor, uint64 prediction)
        private
        returns (uint256 rewardAmount)
    {
        bytes4 sel = IIncentiveMechanism.handleReport.selector;
        address im = address(incentiveMechanism);
        assembly {
            let q := add(r, 0xa0)
            mstore(q, sel)
            mstore(add(q, 0x04), caller())
            mstore(add(q, 0x24), classification)
            mstore(add(q, 0x44), addedTime)
            mstore(add(q, 0x64), originalAuthor)
            mstore(add(q, 0x84), mload(add(r, 0x20))) // initialDeposit
            mstore(add(q, 0xa4), mload(add(r, 0x40))) // claimableAmount
            mstore(add(q, 0xc4), iszero(iszero(mload(add(r, 0x60))))) // claimedByReporter
            mstore(add(q, 0xe4), prediction)
            mstore(add(q, 0x104), mload(add(r, 0x80))) // numClaims
            if iszero(call(gas(), im, 0, q, 0x124, q, 0x20)) {
                returndatacopy(q, 0, returndatasize())
                revert(q, returndatasize())
            }
            if lt(returndatasize(), 0x20) { revert(0, 0) }
            rewardAmount := mload(q)
        }
    }

    function _pay(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert PaymentFailed(to, amount);
    }

    /// classifier.predict(data) through a static call.
    function _predict(int64[] calldata data) private view returns (uint64 prediction) {
        uint256 p = _head();
        bytes4 sel = IClassifier.predict.selector;
        assembly {
            mstore(p, sel)
            mstore(add(p, 0x04), 0x20)
        }
        _staticCall(address(classifier), p, 0x24, data, 0x20);
        uint256 raw;
        assembly {
            raw := mload(p)
        }
        if (raw > type(uint64).max) revert();
        prediction = uint64(raw);
    }

    /// Reverts (without data, like Solidity's decoder) unless every word is a sign-extended int64.
    function _requireInt64Words(int64[] calldata data) private pure {
        assembly {
            let p := data.offset
            for { let end := add(p, shl(5, data.length)) } lt(p, end) { p := add(p, 0x20) } {
                let w := calldataload(p)
                if iszero(eq(signextend(7, w), w)) { revert(0, 0) }
            }
        }
    }

    /// Scratch memory for one call at a time: the call's input, then its output, live there.
    function _head() private pure returns (uint256 p) {
        assembly {
            p := mload(0x40)
        }
    }

    /// Appends `data` as the ABI tail after `headBytes` of selector and head at `p`, calls `target`,
    /// bubbles a revert, requires at least `outBytes` of return data and leaves it at `p`.
    function _call(address target, uint256 p, uint256 headBytes, int64[] calldata data, uint256 outBytes) private {
        assembly {
            let tail := add(p, headBytes)
            let n := data.length
            mstore(tail, n)
            calldatacopy(add(tail, 0x20), data.offset, shl(5, n))
            if iszero(call(gas(), target, 0, p, add(add(headBytes, 0x20), shl(5, n)), p, outBytes)) {
                returndatacopy(p, 0, returndatasize())
                revert(p, returndatasize())
            }
            if lt(returndatasize(), outBytes) { revert(0, 0) }
            // A call to an address without code succeeds with no return data; Solidity's high-level
            // call checks for code in that case, and so do we.
            if iszero(outBytes) { if iszero(extcodesize(target)) { revert(0, 0) } }
        }
    }

    function _staticCall(address target, uint256 p, uint256 headBytes, int64[] calldata data, uint256 outBytes)
        private
        view
    {
        assembly {
            let tail := add(p, headBytes)
            let n := data.length
            mstore(tail, n)
            calldatacopy(add(tail, 0x20), data.offset, shl(5, n))
            if iszero(staticcall(gas(), target, p, add(add(headBytes, 0x20), shl(5, n)), p, outBytes)) {
                returndatacopy(p, 0, returndatasize())
                revert(p, returndatasize())
            }
            if lt(returndatasize(), outBytes) { revert(0, 0) }
        }
    }
}
