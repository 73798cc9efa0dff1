// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice What the trainer needs from a model. Samples are int64 vectors (sparse models: indices of
/// present features; dense models: values scaled by 1e9); labels are class indices.
interface IClassifier {
    function predict(int64[] calldata data) external view returns (uint64);
    function update(int64[] calldata data, uint64 classification) external;
}
