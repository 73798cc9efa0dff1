// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the prediction market reads from its starting model: the public views of
/// SparsePerceptron (the market replays updates in its own overlay and never calls `update`).
interface ISparsePerceptronView {
    function owner() external view returns (address);
    function intercept() external view returns (int80);
    function learningRate() external view returns (int80);
    function weights(uint256 index) external view returns (int80);
    function predict(int64[] calldata data) external view returns (uint64);
}
