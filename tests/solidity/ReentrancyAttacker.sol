// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice Test-only: a contract account that takes part in a DCAI system or a prediction market and,
/// whenever ether reaches it, (1) reads a view of the victim's state (to check that the state is final
/// before ether moves: checks-effects-interactions) and (2) tries once to call back into the victim
/// (re-entry), recording what happened. With `revertOnFailedReentry` it refuses the payment when the
/// re-entry fails, which must make the whole payout revert.
contract ReentrancyAttacker {
    address public target;
    bytes public reentryCall;
    address public probeTarget;
    bytes public probeCall;
    bool public revertOnFailedReentry;
    uint256 public maxAttempts = 1;

    uint256 public attempts;
    uint256 public successes;
    uint256 public paymentsReceived;
    uint256 public totalReceived;
    bytes public lastReentryError;
    bytes public lastProbeResult;

    function configure(
        address target_,
        bytes calldata reentryCall_,
        address probeTarget_,
        bytes calldata probeCall_,
        bool revertOnFailedReentry_,
        uint256 maxAttempts_
    ) external {
        target = target_;
        reentryCall = reentryCall_;
        probeTarget = probeTarget_;
        probeCall = probeCall_;
        revertOnFailedReentry = revertOnFailedReentry_;
        maxAttempts = maxAttempts_;
        attempts = 0;
        successes = 0;
        delete lastReentryError;
        delete lastProbeResult;
    }

    /// Forward a call (with value) to `to`, bubbling up a revert.
    function act(address to, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = to.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        paymentsReceived += 1;
        totalReceived += msg.value;
        if (probeTarget != address(0)) {
            (, bytes memory res) = probeTarget.staticcall(probeCall);
            lastProbeResult = res;
        }
        if (reentryCall.length > 0 && attempts < maxAttempts) {
            attempts += 1;
            (bool ok, bytes memory err) = target.call(reentryCall);
            if (ok) {
                successes += 1;
            } else {
                lastReentryError = err;
                if (revertOnFailedReentry) revert("re-entry failed");
            }
        }
    }
}
